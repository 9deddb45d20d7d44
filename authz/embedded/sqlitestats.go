package embedded

import (
	"context"
	"database/sql"
	"fmt"
)

// tupleStatistics are the sqlite_stat1 rows the engine pins for OpenFGA's tuple
// table. Each stat is "rows, then rows per distinct prefix of the index's columns";
// they describe the shape of relationship data (many objects per type, few tuples
// per object, few tuples per user of a type and relation) for a nominal million
// tuples, not a sample of it.
//
// OpenFGA's sqlite datastore ships no statistics. Without them sqlite answers a
// reverse lookup (tuples of a type whose user is X, ordered by object id: every
// ListObjects step and every Read by user) by walking the primary key in object
// order to skip a sort, visiting every tuple of the type. Sampled statistics were
// no cure: ANALYZE with analysis_limit reads the head of each index, and at 500,000
// ticket tuples it reported 1,001 rows per object type, so the walk came back
// (1.1 s to list a user's three shared tickets). A full ANALYZE costs seconds and
// a write lock at that size. Pinned statistics make the choice the data always
// supports, at no cost; indexes never change answers.
var tupleStatistics = []struct{ idx, stat string }{
	// (store, object_type, object_id, relation, user_object_type, user_object_id, user_relation)
	{"sqlite_autoindex_tuple_1", "1000000 1000000 100000 3 2 1 1 1"},
	// (store, object_type, relation, user_object_type, user_object_id, user_relation)
	{"idx_reverse_lookup_user", "1000000 1000000 100000 50000 50000 10 10"},
	// (store, ulid), (ulid): change reads
	{"idx_store_ulid", "1000000 1000000 1"},
	{"idx_tuple_ulid", "1000000 1"},
}

// pinTupleStatistics writes tupleStatistics. It runs before the datastore opens
// its connections, which read the statistics when they load the schema.
func pinTupleStatistics(ctx context.Context, db *sql.DB) error {
	// ANALYZE of a one-row table creates sqlite_stat1 when it is missing.
	if _, err := db.ExecContext(ctx, "ANALYZE store"); err != nil {
		return fmt.Errorf("sqlite statistics table: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM sqlite_stat1 WHERE tbl = 'tuple'"); err != nil {
		return fmt.Errorf("sqlite statistics: %w", err)
	}
	for _, s := range tupleStatistics {
		if _, err := tx.ExecContext(ctx, "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('tuple', ?, ?)", s.idx, s.stat); err != nil {
			return fmt.Errorf("sqlite statistics for %s: %w", s.idx, err)
		}
	}
	return tx.Commit()
}
