package embedded

import (
	"context"
	"database/sql"
)

// CloseDatastore closes the datastore under a running server: the fault of a
// database that went away.
func (e *Engine) CloseDatastore() { e.ds.Close() }

// RestorePartialIndexes recreates the OpenFGA indexes the engine drops, for a
// benchmark of the schema as OpenFGA ships it.
func (e *Engine) RestorePartialIndexes(ctx context.Context) error {
	db, err := sql.Open("sqlite", sqliteDSN(e.sqlitePath))
	if err != nil {
		return err
	}
	defer db.Close()
	for _, idx := range partialTupleIndexes {
		if _, err := db.ExecContext(ctx, idx.create); err != nil {
			return err
		}
	}
	return nil
}
