package embedded_test

import (
	"testing"

	"github.com/clearance-dev/clearance/authz/authztest"
	"github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// go test ./authz/embedded -run '^$' -bench . -benchtime 2s
func BenchmarkMemory(b *testing.B) {
	e := open(b, embedded.Config{Datastore: embedded.Memory})
	defer e.Close()
	authztest.Bench(b, e)
}

func BenchmarkSQLite(b *testing.B) {
	e := open(b, embedded.Config{Datastore: embedded.SQLite, DataDir: b.TempDir()})
	defer e.Close()
	authztest.Bench(b, e)
}

func BenchmarkPostgres(b *testing.B) {
	e := open(b, embedded.Config{Datastore: embedded.Postgres, DatabaseURL: testenv.DatabaseURL(b)})
	defer e.Close()
	authztest.Bench(b, e)
}
