package openfga_test

import (
	"context"
	"os"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/authztest"
	"github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/openfga"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// go test ./authz/openfga -run '^$' -bench . -benchtime 2s (server: memory datastore)
func BenchmarkServer(b *testing.B) {
	srv := startServer(b)
	e := newEngine(b, openfga.Config{URL: srv.URL})
	defer e.Close()
	authztest.Bench(b, e)
}

// go test ./authz/openfga -run '^$' -bench Revision (server: memory datastore)
func BenchmarkRevision(b *testing.B) {
	srv := startServer(b)
	authztest.BenchRevision(b, func(b *testing.B) authz.Engine { return newEngine(b, openfga.Config{URL: srv.URL}) })
}

// BenchmarkSideBySide: the embedded engine and `openfga run` (through this
// adapter) on the same datastore kind, in one run, answering the same questions
// (authztest.Bench). PostgreSQL runs when DATABASE_URL is set: both on one
// database, a store each.
//
//	./scripts/with-test-servers.sh go test ./authz/openfga -run '^$' -bench SideBySide -benchtime 2s -count 3
func BenchmarkSideBySide(b *testing.B) {
	datastores := []string{embedded.Memory}
	if os.Getenv("DATABASE_URL") != "" {
		datastores = append(datastores, embedded.Postgres)
	}
	for _, ds := range datastores {
		b.Run("datastore="+ds, func(b *testing.B) {
			cfg := embedded.Config{Datastore: ds}
			var extra []string
			if ds == embedded.Postgres {
				cfg.DatabaseURL = testenv.DatabaseURL(b)
				extra = []string{"--datastore-engine", "postgres", "--datastore-uri", cfg.DatabaseURL}
			}
			// The embedded engine first: it runs the datastore's migrations.
			emb, err := embedded.New(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer emb.Close()
			srv := startServer(b, extra...)
			remote := newEngine(b, openfga.Config{URL: srv.URL})
			defer remote.Close()
			b.Run("engine=embedded", func(b *testing.B) { authztest.Bench(b, emb) })
			b.Run("engine=server", func(b *testing.B) { authztest.Bench(b, remote) })
		})
	}
}
