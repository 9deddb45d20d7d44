package pgvector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/retrieval"
)

// migrations are applied in order, each once, recorded in
// clearance_vector_migrations. Never edit a released step: append a new one.
// {{dim}} is the embedding dimension (fixed when the index is created).
var migrations = []string{
	1: `
CREATE TABLE clearance_vector_meta (
  singleton bool PRIMARY KEY DEFAULT true CHECK (singleton),
  model text NOT NULL,
  dim int NOT NULL
);
CREATE TABLE clearance_vector_tickets (
  id text COLLATE "C" PRIMARY KEY,
  tenant text NOT NULL,
  project text NOT NULL,
  title text NOT NULL,
  body text NOT NULL,
  updated_at timestamptz NOT NULL,
  content_hash text NOT NULL,
  chunks int NOT NULL
);
CREATE TABLE clearance_vector_chunks (
  ticket_id text COLLATE "C" NOT NULL REFERENCES clearance_vector_tickets (id) ON DELETE CASCADE,
  ordinal int NOT NULL,
  tenant text NOT NULL,
  project text NOT NULL,
  text text NOT NULL,
  embedding vector({{dim}}) NOT NULL,
  PRIMARY KEY (ticket_id, ordinal)
);
CREATE INDEX clearance_vector_chunks_tenant_project ON clearance_vector_chunks (tenant, project);
CREATE INDEX ` + hnswIndex + ` ON clearance_vector_chunks USING hnsw (embedding vector_ip_ops);`,
	// The search planner counts allowed chunks from the narrow tickets table.
	2: `CREATE INDEX clearance_vector_tickets_tenant_project ON clearance_vector_tickets (tenant, project);`,
}

// hnswIndex is the name of the HNSW index (benchmarks drop it for bulk loads).
const hnswIndex = "clearance_vector_chunks_embedding_hnsw"

// migrate brings the schema up to date and checks the index's embedding space,
// under an advisory lock so concurrent opens do not race.
func migrate(ctx context.Context, cc *pgx.ConnConfig, meta retrieval.IndexMeta, log *slog.Logger) error {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return unavailable("connect", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7363261090281746)`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS vector`); err != nil {
			return fmt.Errorf("create extension vector (is pgvector installed on the server?): %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS clearance_vector_migrations (
  version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var version int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM clearance_vector_migrations`).Scan(&version); err != nil {
			return err
		}
		if version > len(migrations)-1 {
			return fmt.Errorf("schema version %d is newer than this build knows (%d)", version, len(migrations)-1)
		}
		for v := version + 1; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, strings.ReplaceAll(migrations[v], "{{dim}}", strconv.Itoa(meta.Dim))); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO clearance_vector_migrations (version) VALUES ($1)`, v); err != nil {
				return err
			}
			log.InfoContext(ctx, "pgvector schema migrated", "version", v)
		}
		var have retrieval.IndexMeta
		err := tx.QueryRow(ctx, `SELECT model, dim FROM clearance_vector_meta`).Scan(&have.Model, &have.Dim)
		if errors.Is(err, pgx.ErrNoRows) {
			_, err = tx.Exec(ctx, `INSERT INTO clearance_vector_meta (model, dim) VALUES ($1, $2)`, meta.Model, meta.Dim)
			return err
		}
		if err != nil {
			return err
		}
		if have != meta {
			return fmt.Errorf("database has model %q dim %d, opened with model %q dim %d: %w",
				have.Model, have.Dim, meta.Model, meta.Dim, retrieval.ErrIndexMismatch)
		}
		return nil
	})
	if errors.Is(err, retrieval.ErrIndexMismatch) {
		return fmt.Errorf("pgvector: %w", err)
	}
	if err != nil {
		return unavailable("migrate", err)
	}
	return nil
}
