package pgvector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/internal/pgschema"
	"github.com/clearance-dev/clearance/retrieval"
)

// hnswIndex is the name of the HNSW index (benchmarks drop it for bulk loads).
const hnswIndex = "clearance_vector_chunks_embedding_hnsw"

// migrate brings the schema up to date through clearance's one migration path
// (internal/pgschema, under its advisory lock), then checks the index's embedding
// space, or records it on an empty database (the first store opened wins; the
// others compare).
func migrate(ctx context.Context, cc *pgx.ConnConfig, meta retrieval.IndexMeta, log *slog.Logger) error {
	if err := pgschema.MigrateVector(ctx, cc, meta.Dim, log); err != nil {
		if errors.Is(err, pgschema.ErrNewerSchema) {
			return fmt.Errorf("pgvector: %w", err)
		}
		return unavailable("migrate", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return unavailable("connect", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `INSERT INTO clearance_vector_meta (model, dim) VALUES ($1, $2) ON CONFLICT DO NOTHING`, meta.Model, meta.Dim); err != nil {
		return unavailable("migrate", err)
	}
	var have retrieval.IndexMeta
	if err := conn.QueryRow(ctx, `SELECT model, dim FROM clearance_vector_meta`).Scan(&have.Model, &have.Dim); err != nil {
		return unavailable("migrate", err)
	}
	if have != meta {
		return fmt.Errorf("pgvector: database has model %q dim %d, opened with model %q dim %d: %w",
			have.Model, have.Dim, meta.Model, meta.Dim, retrieval.ErrIndexMismatch)
	}
	return nil
}
