package pgvector

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

// TestMigrations: concurrent first opens of an empty database all succeed (the
// advisory lock serialises them), a database at an older schema version is
// brought up to date on open, and one at a newer version than this build knows
// is refused.
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
	version := func() int {
		var v, n int
		if err := conn.QueryRow(ctx, `SELECT max(version), count(*) FROM clearance_vector_migrations`).Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		if n != v {
			t.Fatalf("%d migration rows up to version %d: a step ran twice or was skipped", n, v)
		}
		return v
	}
	latest := len(migrations) - 1
	if v := version(); v != latest {
		t.Fatalf("schema version %d, want %d", v, latest)
	}
	// Roll back to version 1 as an older build left it.
	if _, err := conn.Exec(ctx, `DELETE FROM clearance_vector_migrations WHERE version > 1;
DROP INDEX clearance_vector_tickets_tenant_project`); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, Config{DatabaseURL: url, Meta: meta})
	if err != nil {
		t.Fatalf("open at version 1: %v", err)
	}
	s.Close()
	if v := version(); v != latest {
		t.Fatalf("after upgrade: schema version %d, want %d", v, latest)
	}
	var idx int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE indexname = 'clearance_vector_tickets_tenant_project'`).Scan(&idx); err != nil || idx != 1 {
		t.Fatalf("migration 2's index: %d, %v", idx, err)
	}
	// A newer build's schema is refused, not reinterpreted.
	if _, err := conn.Exec(ctx, `INSERT INTO clearance_vector_migrations (version) VALUES ($1)`, latest+1); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, Config{DatabaseURL: url, Meta: meta})
	if !errors.Is(err, retrieval.ErrUnavailable) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("open of a newer schema = %v, want an error saying it is newer", err)
	}
}
