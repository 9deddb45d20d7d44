package embedded_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/clearance-dev/clearance/authz"

	"github.com/clearance-dev/clearance/authz/authztest"
	"github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/internal/bench"
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

// BenchmarkRevisionPostgres: the change-log probe on PostgreSQL (a store per
// window size, one database).
//
//	./scripts/with-test-servers.sh go test ./authz/embedded -run '^$' -bench RevisionPostgres
func BenchmarkRevisionPostgres(b *testing.B) {
	dbURL := testenv.DatabaseURL(b)
	stores := 0
	authztest.BenchRevision(b, func(b *testing.B) authz.Engine {
		stores++
		e := open(b, embedded.Config{Datastore: embedded.Postgres, DatabaseURL: dbURL, StoreName: fmt.Sprintf("rev%d", stores)})
		b.Cleanup(func() { e.Close() })
		return e
	})
}

// BenchmarkSQLiteStatistics lists the three tickets shared with a user among
// 50,000, on a file without planner statistics and with the ones the engine pins.
//
//	go test ./authz/embedded -run '^$' -bench SQLiteStatistics -benchtime 50x
func BenchmarkSQLiteStatistics(b *testing.B) {
	for _, bc := range []struct {
		name     string
		unpinned bool
	}{{"stats=off", true}, {"stats=pinned", false}} {
		b.Run(bc.name, func(b *testing.B) {
			e := open(b, embedded.Config{DataDir: b.TempDir(), SQLiteUnpinnedStatistics: bc.unpinned})
			defer e.Close()
			var tuples []authz.Tuple
			for i := range 50000 {
				tuples = append(tuples, authz.Tuple{User: fmt.Sprintf("project:p%d", i%500), Relation: "project", Object: fmt.Sprintf("ticket:T-%d", i)})
			}
			for _, id := range []string{"T-7", "T-12345", "T-49999"} {
				tuples = append(tuples, authz.Tuple{User: "user:alice", Relation: "viewer", Object: "ticket:" + id})
			}
			if err := e.Write(context.Background(), tuples, nil); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				n := 0
				for _, err := range e.ListObjects(context.Background(), authz.Query{}, "user:alice", authz.RelationShared, "ticket") {
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != 3 {
					b.Fatalf("listed %d tickets, want 3", n)
				}
			}
		})
	}
}

// BenchmarkSQLiteCheck compares a BatchCheck of 10 HIGHER_CONSISTENCY can_view
// checks (the planner's post-filter) on the sqlite schema as OpenFGA ships it
// (partial tuple indexes, whose bound-parameter condition makes sqlite re-prepare
// every statement) and as the engine runs it (without them, so each connection's
// cached statements are reused). Both engines hold the same synthetic org of
// 10,000 tickets and answer the same sequence of checks.
//
//	go test ./authz/embedded -run '^$' -bench SQLiteCheck -benchtime 200x
func BenchmarkSQLiteCheck(b *testing.B) {
	ctx := context.Background()
	org := bench.GenerateOrg(bench.DefaultOrgConfig(20000))
	shipped := open(b, embedded.Config{DataDir: b.TempDir()})
	defer shipped.Close()
	ours := open(b, embedded.Config{DataDir: b.TempDir()})
	defer ours.Close()
	for _, e := range []*embedded.Engine{shipped, ours} {
		if err := e.Write(ctx, org.Tuples, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := shipped.RestorePartialIndexes(ctx); err != nil {
		b.Fatal(err)
	}
	batch := func(i int) (authz.Query, []authz.Check) {
		v := org.Viewers[i%len(org.Viewers)]
		var cs []authz.Check
		for j := range 10 {
			t := org.Tickets[(i*31+j*97)%len(org.Tickets)]
			cs = append(cs, authz.Check{User: v.Principal.Subject(), Relation: v.Principal.ViewRelation(), Object: "ticket:" + t.ID})
		}
		return authz.Query{ContextualTuples: v.Principal.ContextualTuples(), Consistency: authz.HigherConsistency}, cs
	}
	for _, bc := range []struct {
		name string
		e    *embedded.Engine
	}{{"schema=openfga", shipped}, {"schema=clearance", ours}} {
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				q, cs := batch(i)
				i++
				if _, err := bc.e.BatchCheck(ctx, q, cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
