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
// still serves repeated searches; a revocation is gone on the next search too.
func TestReplicasEmbeddedPostgres(t *testing.T) {
	a, b := postgresReplicas(t)
	testReplicas(t, a, b)
}

// TestReplicasRemote: the same with two remote adapters on one `openfga run`.
func TestReplicasRemote(t *testing.T) {
	a, b := remoteReplicas(t, "replicas")
	testReplicas(t, a, b)
}

func testReplicas(t *testing.T, a, b authz.Engine) {
	ctx := context.Background()
	f := newFixtureOn(t, a)
	engines := []authz.Engine{a, b}
	planners := []*filter.Planner{f.planner(a, nil, nil), f.planner(b, nil, nil)}
	// Each trial: a new principal searches through the reader twice (the second
	// search is a cache hit), gets access through the writer, and searches
	// through the reader again. The access is a project membership, a direct
	// share, a team membership or an agent's delegation grant, in turn; the
	// replicas swap roles every trial.
	type grant struct {
		principal func(name string) authz.Principal
		tuples    func(name string) []authz.Tuple
		want      string
	}
	asUser := func(name string) authz.Principal { return user("acme", name) }
	grants := []grant{
		{asUser, func(u string) []authz.Tuple {
			return []authz.Tuple{{User: "user:" + u, Relation: "member", Object: "project:zeus"}}
		}, "T-3"},
		{asUser, func(u string) []authz.Tuple {
			return []authz.Tuple{{User: "user:" + u, Relation: "viewer", Object: "ticket:T-4"}}
		}, "T-4"},
		{asUser, func(u string) []authz.Tuple {
			return []authz.Tuple{{User: "user:" + u, Relation: "member", Object: "team:core"}}
		}, "T-1"},
		// anne (team core, member of apollo) lets a new agent read apollo, as
		// `clearance grants create` does.
		{func(a string) authz.Principal { return agent("acme", "anne", a) }, func(a string) []authz.Tuple {
			d := "delegation:anne~" + a
			return []authz.Tuple{
				{User: "user:anne", Relation: "delegator", Object: d},
				{User: "agent:" + a, Relation: "agent", Object: d},
				{User: d, Relation: "granted", Object: "project:apollo"},
			}
		}, "T-1"},
	}
	seen, hits, revoked := 0, 0, 0
	for i := range replicaTrials {
		w, r := i%2, 1-i%2
		name := fmt.Sprintf("r%d-%d", time.Now().UnixNano(), i)
		g := grants[i%len(grants)]
		p := g.principal(name)
		if got := ids(search(t, planners[r], p, filter.Request{})); slices.Contains(got, g.want) {
			t.Fatalf("trial %d: %s sees %v before the grant", i, p, got)
		}
		resp := search(t, planners[r], p, filter.Request{})
		if rec, _ := f.log.Record(resp.AuditID); rec.Plan.CacheHit {
			hits++
		}
		if err := engines[w].Write(ctx, g.tuples(name), nil); err != nil {
			t.Fatal(err)
		}
		resp = search(t, planners[r], p, filter.Request{})
		if slices.Contains(ids(resp), g.want) {
			seen++
		} else {
			rec, _ := f.log.Record(resp.AuditID)
			t.Errorf("trial %d: %v through replica %d not visible through replica %d: %v (plan %+v)", i, g.tuples(name), w, r, ids(resp), rec.Plan)
		}
		// Revocation through the writer: gone on the reader's next search.
		if err := engines[w].Write(ctx, nil, g.tuples(name)); err != nil {
			t.Fatal(err)
		}
		if got := ids(search(t, planners[r], p, filter.Request{})); slices.Contains(got, g.want) {
			t.Errorf("trial %d: revoked %s still visible through replica %d: %v", i, g.want, r, got)
		} else {
			revoked++
		}
	}
	t.Logf("%d of %d grants visible on the other replica's next search, %d of %d revocations; %d of %d repeated searches hit the cache", seen, replicaTrials, revoked, replicaTrials, hits, replicaTrials)
	if hits < replicaTrials*9/10 {
		t.Errorf("only %d of %d repeated searches hit the cache", hits, replicaTrials)
	}
}

// postgresReplicas opens two embedded engines on one PostgreSQL datastore: two
// replicas' engines.
func postgresReplicas(t *testing.T) (a, b authz.Engine) {
	dbURL := testenv.DatabaseURL(t)
	open := func() authz.Engine {
		e, err := authzembedded.New(context.Background(), authzembedded.Config{Datastore: authzembedded.Postgres, DatabaseURL: dbURL})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	return open(), open()
}

// remoteReplicas opens two remote adapters on one `openfga run`, in the store
// named store.
func remoteReplicas(t *testing.T, store string) (a, b authz.Engine) {
	srv := testenv.StartOpenFGA(t, "")
	open := func() authz.Engine {
		e, err := openfga.New(context.Background(), openfga.Config{URL: srv.URL, StoreName: store})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	return open(), open()
}
