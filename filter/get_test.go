package filter_test

import (
	"context"
	"errors"
	"iter"
	"strings"
	"sync"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/openfga"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// countingEngine is the real engine with every call recorded.
type countingEngine struct {
	filter.Engine
	mu      sync.Mutex
	batches []checkCall
	lists   int
}

type checkCall struct {
	q      authz.Query
	checks []authz.Check
}

func (e *countingEngine) BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error) {
	e.mu.Lock()
	e.batches = append(e.batches, checkCall{q: q, checks: append([]authz.Check(nil), checks...)})
	e.mu.Unlock()
	return e.Engine.BatchCheck(ctx, q, checks)
}

func (e *countingEngine) ListObjects(ctx context.Context, q authz.Query, user, relation, typ string) iter.Seq2[string, error] {
	e.mu.Lock()
	e.lists++
	e.mu.Unlock()
	return e.Engine.ListObjects(ctx, q, user, relation, typ)
}

func (e *countingEngine) reset() []checkCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.batches
	e.batches, e.lists = nil, 0
	return out
}

// TestGetSameEngineWork: a ticket read asks the engine the same question
// whether the id is a visible ticket, an invisible one of the caller's tenant,
// one of another tenant, one the token's narrowing excludes, or no ticket at
// all, so latency cannot tell them apart (issue 14, defect 4). The decoy
// question for a missing id only ever names the caller's own tenant, and its
// answer never makes a missing ticket visible (ada is acme's admin: the decoy
// allows her).
func TestGetSameEngineWork(t *testing.T) {
	testGetSameEngineWork(t, newFixture(t))
}

// TestGetSameEngineWorkRemote: the same against a real `openfga run` through
// the remote adapter, which validates the decoy's contextual tuples the same
// way and must answer them, not refuse them.
func TestGetSameEngineWorkRemote(t *testing.T) {
	srv := testenv.StartOpenFGA(t, "")
	e, err := openfga.New(context.Background(), openfga.Config{URL: srv.URL, StoreName: "decoy"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	testGetSameEngineWork(t, newFixtureOn(t, e))
}

func testGetSameEngineWork(t *testing.T, f *fixture) {
	eng := &countingEngine{Engine: f.eng}
	pl := f.planner(eng, nil, nil)
	ctx := context.Background()
	narrowed := user("acme", "anne")
	narrowed.Narrowing = &authz.Narrowing{Projects: []string{"zeus"}}
	for _, tc := range []struct {
		name    string
		p       authz.Principal
		id      string
		visible bool
	}{
		{"visible", user("acme", "anne"), "T-1", true},
		{"blocked", user("acme", "anne"), "T-4", false},
		{"not a member", user("acme", "bob"), "T-1", false},
		{"agent without grant", agent("acme", "anne", "copilot"), "T-3", false},
		{"other tenant", user("acme", "anne"), "G-1", false},
		{"missing", user("acme", "anne"), "T-404", false},
		{"missing, agent", agent("acme", "anne", "copilot"), "T-404", false},
		{"missing, tenant admin", user("acme", "ada"), "T-404", false},
		{"other tenant, tenant admin", user("acme", "ada"), "G-1", false},
		{"narrowed out", narrowed, "T-1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng.reset()
			got, err := pl.Get(ctx, tc.p, tc.id)
			switch {
			case tc.visible && (err != nil || got.Ticket.ID != tc.id):
				t.Fatalf("want %s: %+v, %v", tc.id, got, err)
			case !tc.visible && !errors.Is(err, clearance.ErrNotFound):
				t.Fatalf("want not found: %+v, %v", got, err)
			}
			calls := eng.reset()
			if len(calls) != 1 || len(calls[0].checks) != 1 {
				t.Fatalf("engine got %d BatchCheck calls (%+v), want exactly one of one check", len(calls), calls)
			}
			c := calls[0]
			want := authz.Check{User: tc.p.Subject(), Relation: tc.p.ViewRelation(), Object: "ticket:" + tc.id}
			if c.checks[0] != want || c.q.Consistency != authz.HigherConsistency {
				t.Fatalf("check %+v (%s), want %+v (HIGHER_CONSISTENCY)", c.checks[0], c.q.Consistency, want)
			}
			for _, ct := range c.q.ContextualTuples {
				if strings.HasPrefix(ct.User, "tenant:") && ct.User != "tenant:"+tc.p.Tenant {
					t.Errorf("decoy names another tenant: %+v", ct)
				}
				if strings.Contains(ct.User+ct.Object, "globex") || strings.Contains(ct.User+ct.Object, "hermes") {
					t.Errorf("contextual tuple names the other tenant's objects: %+v", ct)
				}
			}
		})
	}
}

// cachingCounter is countingEngine with the engine's revision, change list,
// model check and reads, so the decision cache is on.
type cachingCounter struct {
	*countingEngine
	eng authz.Engine
}

func (e cachingCounter) Revision(ctx context.Context) (authz.Revision, error) {
	return e.eng.(authz.Revisioned).Revision(ctx)
}

func (e cachingCounter) ChangedObjects(from, to authz.Revision) ([]string, bool) {
	return e.eng.(authz.ChangeLister).ChangedObjects(from, to)
}

func (e cachingCounter) ClearanceModel() bool { return e.eng.(authz.ClearanceModeled).ClearanceModel() }

func (e cachingCounter) Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	return e.eng.Read(ctx, f)
}

// TestGetCachedSameEngineWork: with the decision cache on, a repeated read
// costs no engine call whatever the id names (visible, invisible, another
// tenant's, missing), and any write, even one to an unrelated ticket only,
// makes the next read of every id ask the engine again: a read's cost never
// tells whether its id exists. A search that checked an invisible ticket does
// not make its read cheaper than a missing id's. Revocation holds on the next
// read.
func TestGetCachedSameEngineWork(t *testing.T) {
	f := newFixture(t)
	eng := cachingCounter{&countingEngine{Engine: f.eng}, f.eng}
	pl := f.planner(eng, nil, nil)
	ctx := context.Background()
	cases := []struct {
		p  authz.Principal
		id string
	}{
		{user("acme", "anne"), "T-1"},
		{user("acme", "anne"), "T-4"},
		{user("acme", "bob"), "T-1"},
		{agent("acme", "anne", "copilot"), "T-3"},
		{user("acme", "anne"), "G-1"},
		{user("acme", "anne"), "T-404"},
		{agent("acme", "anne", "copilot"), "T-404"},
		{user("acme", "ada"), "T-404"},
	}
	read := func(want int) {
		t.Helper()
		for _, tc := range cases {
			eng.reset()
			_, _ = pl.Get(ctx, tc.p, tc.id)
			if n := len(eng.reset()); n != want {
				t.Errorf("%s reading %s: %d engine checks, want %d", tc.p, tc.id, n, want)
			}
		}
	}
	// A search of anne checks her blocked T-4 (and others) first: it must not
	// warm her read of T-4.
	search(t, pl, user("acme", "anne"), filter.Request{})
	read(1)
	read(0)
	// A write to one unrelated ticket: every read asks again.
	if err := f.eng.Write(ctx, []authz.Tuple{{User: "user:carl", Relation: "viewer", Object: "ticket:T-5"}}, nil); err != nil {
		t.Fatal(err)
	}
	read(1)
	read(0)
	// Revocation on the next read.
	if _, err := pl.Get(ctx, user("acme", "anne"), "T-1"); err != nil {
		t.Fatalf("anne reads T-1: %v", err)
	}
	if err := f.eng.Write(ctx, []authz.Tuple{{User: "user:anne", Relation: "blocked", Object: "ticket:T-1"}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pl.Get(ctx, user("acme", "anne"), "T-1"); !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("anne reads T-1 after her block: %v", err)
	}
}
