package filter_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/authz"
	authzembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/openfga"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// replicaTrials is how many grants each replica test makes through one replica
// and reads through the other.
const replicaTrials = 100

// TestReplicasEmbeddedPostgres: two embedded engines on one PostgreSQL
// datastore, each under its own planner (two replicas): new access written
// through one shows in the other's next search, every time, while the cache
// still serves repeated searches.
func TestReplicasEmbeddedPostgres(t *testing.T) {
	dbURL := testenv.DatabaseURL(t)
	open := func() authz.Engine {
		e, err := authzembedded.New(context.Background(), authzembedded.Config{Datastore: authzembedded.Postgres, DatabaseURL: dbURL})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	testReplicas(t, open(), open())
}

// TestReplicasRemote: the same with two remote adapters on one `openfga run`.
func TestReplicasRemote(t *testing.T) {
	srv := testenv.StartOpenFGA(t, "")
	open := func() authz.Engine {
		e, err := openfga.New(context.Background(), openfga.Config{URL: srv.URL, StoreName: "replicas"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	testReplicas(t, open(), open())
}

func testReplicas(t *testing.T, a, b authz.Engine) {
	ctx := context.Background()
	f := newFixtureOn(t, a)
	engines := []authz.Engine{a, b}
	planners := []*filter.Planner{f.planner(a, nil, nil), f.planner(b, nil, nil)}
	// Each trial: a new user searches through the reader twice (the second
	// search is a cache hit), gets a grant through the writer, and searches
	// through the reader again. The grant is a project membership, a direct
	// share or a team membership, in turn; the replicas swap roles every trial.
	type grant struct {
		tuple func(u string) authz.Tuple
		want  string
	}
	grants := []grant{
		{func(u string) authz.Tuple { return authz.Tuple{User: u, Relation: "member", Object: "project:zeus"} }, "T-3"},
		{func(u string) authz.Tuple { return authz.Tuple{User: u, Relation: "viewer", Object: "ticket:T-4"} }, "T-4"},
		{func(u string) authz.Tuple { return authz.Tuple{User: u, Relation: "member", Object: "team:core"} }, "T-1"},
	}
	seen, hits := 0, 0
	for i := range replicaTrials {
		w, r := i%2, 1-i%2
		name := fmt.Sprintf("r%d-%d", time.Now().UnixNano(), i)
		p := user("acme", name)
		if got := ids(search(t, planners[r], p, filter.Request{})); len(got) != 0 {
			t.Fatalf("trial %d: new user sees %v", i, got)
		}
		resp := search(t, planners[r], p, filter.Request{})
		if rec, _ := f.log.Record(resp.AuditID); rec.Plan.CacheHit {
			hits++
		}
		g := grants[i%len(grants)]
		if err := engines[w].Write(ctx, []authz.Tuple{g.tuple("user:" + name)}, nil); err != nil {
			t.Fatal(err)
		}
		resp = search(t, planners[r], p, filter.Request{})
		if slices.Contains(ids(resp), g.want) {
			seen++
		} else {
			rec, _ := f.log.Record(resp.AuditID)
			t.Errorf("trial %d: grant %s through replica %d not visible through replica %d: %v (plan %+v)", i, g.tuple("user:"+name), w, r, ids(resp), rec.Plan)
		}
	}
	t.Logf("%d of %d grants visible on the other replica's next search; %d of %d repeated searches hit the cache", seen, replicaTrials, hits, replicaTrials)
	if hits < replicaTrials*9/10 {
		t.Errorf("only %d of %d repeated searches hit the cache", hits, replicaTrials)
	}
}
