package pgvector

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/internal/pgschema"
	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

// TestMigrations: concurrent first opens of an empty database all succeed (the
// advisory lock serialises them), another embedding space is refused, and a
// database at a newer schema version than this build knows is refused.
// internal/pgschema tests the upgrade of a database older builds created.
func TestMigrations(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	meta := retrieval.IndexMeta{Model: "migrate-test", Dim: 3}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(ctx, Config{DatabaseURL: url, Meta: meta})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent first open: %v", err)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Another embedding space on the same database is refused.
	if _, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: "other", Dim: 3}}); !errors.Is(err, retrieval.ErrIndexMismatch) {
		t.Fatalf("open with another model = %v, want ErrIndexMismatch", err)
	}
	// A newer build's schema is refused, not reinterpreted.
	var v int64
	if err := conn.QueryRow(ctx, `SELECT max(version_id) FROM `+pgschema.VectorTable).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+pgschema.VectorTable+` (version_id, is_applied) VALUES ($1, true)`, v+1); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, Config{DatabaseURL: url, Meta: meta})
	if !errors.Is(err, pgschema.ErrNewerSchema) || !strings.Contains(err.Error(), "upgrade clearance") {
		t.Fatalf("open of a newer schema = %v, want an error saying it is newer", err)
	}
}
