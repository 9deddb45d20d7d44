package filter_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
)

// decisionEngine counts the post-filter's checks (not the tenant-admin check)
// and can be switched to fail, keeping the engine's revision and reads.
type decisionEngine struct {
	authz.Engine
	checks   atomic.Int64
	batchErr atomic.Bool
	revErr   atomic.Bool
}

func (e *decisionEngine) BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error) {
	if e.batchErr.Load() {
		return nil, authz.ErrUnavailable
	}
	if len(checks) > 0 && checks[0].Relation != "admin" {
		e.checks.Add(int64(len(checks)))
	}
	return e.Engine.BatchCheck(ctx, q, checks)
}

func (e *decisionEngine) Revision(ctx context.Context) (authz.Revision, error) {
	if e.revErr.Load() {
		return authz.Revision{}, authz.ErrUnavailable
	}
	return e.Engine.(authz.Revisioned).Revision(ctx)
}

func (e *decisionEngine) ClearanceModel() bool {
	return e.Engine.(authz.ClearanceModeled).ClearanceModel()
}

func (e *decisionEngine) Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	return e.Engine.Read(ctx, f)
}

func plan(t *testing.T, f *fixture, resp filter.Response) audit.Plan {
	t.Helper()
	rec, ok := f.log.Record(resp.AuditID)
	if !ok {
		t.Fatalf("no audit record %s", resp.AuditID)
	}
	return rec.Plan
}

// TestDecisionCacheRevocation: a repeated search is answered from the decision
// cache without asking the engine, and every kind of revocation (membership,
// share, team, block) is honoured on the very next search.
func TestDecisionCacheRevocation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	eng := &decisionEngine{Engine: f.eng}
	pl := filter.New(filter.Config{}, eng, f.store, f.emb, f.log)
	if err := f.eng.Write(ctx, []authz.Tuple{
		{User: "user:dora", Relation: "member", Object: "project:zeus"},
		{User: "user:dora", Relation: "viewer", Object: "ticket:T-1"},
		{User: "user:dora", Relation: "member", Object: "team:core"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	dora := user("acme", "dora")
	want := []string{"T-1", "T-2", "T-3", "T-4", "T-5"}
	if got := ids(search(t, pl, dora, filter.Request{})); !slices.Equal(got, want) {
		t.Fatalf("first: %v", got)
	}
	before := eng.checks.Load()
	resp := search(t, pl, dora, filter.Request{})
	if got := ids(resp); !slices.Equal(got, want) {
		t.Fatalf("second: %v", got)
	}
	p := plan(t, f, resp)
	if eng.checks.Load() != before || p.CachedDecisions != p.Checked || p.Checked == 0 {
		t.Fatalf("repeated search asked the engine %d checks; plan %+v", eng.checks.Load()-before, p)
	}
	revocations := []struct {
		writes, deletes []authz.Tuple
		gone            string
	}{
		{deletes: []authz.Tuple{{User: "user:dora", Relation: "member", Object: "project:zeus"}}, gone: "T-5"},
		{writes: []authz.Tuple{{User: "user:dora", Relation: "blocked", Object: "ticket:T-2"}}, gone: "T-2"},
		{deletes: []authz.Tuple{{User: "user:dora", Relation: "viewer", Object: "ticket:T-1"}}, gone: ""},
		{deletes: []authz.Tuple{{User: "user:dora", Relation: "member", Object: "team:core"}}, gone: "T-1"},
	}
	for i, r := range revocations {
		if err := f.eng.Write(ctx, r.writes, r.deletes); err != nil {
			t.Fatal(err)
		}
		got := ids(search(t, pl, dora, filter.Request{}))
		if r.gone != "" && slices.Contains(got, r.gone) {
			t.Fatalf("revocation %d: %s still visible: %v", i, r.gone, got)
		}
		if again := ids(search(t, pl, dora, filter.Request{})); !slices.Equal(again, got) {
			t.Fatalf("revocation %d: cached answer %v differs from fresh %v", i, again, got)
		}
	}
	if s := pl.DecisionCacheStats(); s.Hits == 0 || s.Invalidations == 0 || s.Misses == 0 {
		t.Errorf("stats: %+v", s)
	}
}

// TestDecisionCacheTicketChange: a write whose objects are all tickets drops
// only those tickets' decisions; any other write drops everything. Listings are
// cut short so that every tenant ticket is checked (nothing hides behind the
// pre-filter).
func TestDecisionCacheTicketChange(t *testing.T) {
	eng := memoryEngine(t)
	testTicketChange(t, eng, eng)
}

// TestDecisionCacheTicketChangePostgres: the same with the writes made through
// another replica (embedded engines on one PostgreSQL): the change log's tuple
// keys name the ticket.
func TestDecisionCacheTicketChangePostgres(t *testing.T) {
	a, b := postgresReplicas(t)
	testTicketChange(t, a, b)
}

// TestDecisionCacheTicketChangeRemote: the same with two remote adapters on one
// `openfga run` (its ReadChanges).
func TestDecisionCacheTicketChangeRemote(t *testing.T) {
	a, b := remoteReplicas(t, "ticketchange")
	testTicketChange(t, a, b)
}

// testTicketChange searches through a planner on engine a and writes through
// engine b.
func testTicketChange(t *testing.T, a, b authz.Engine) {
	ctx := context.Background()
	f := newFixtureOn(t, a)
	eng := revFault{&faultEngine{Engine: a, truncate: map[string]bool{"can_view": true, "agent_can_view": true}}, a}
	pl := filter.New(filter.Config{}, eng, f.store, f.emb, f.log)
	anne := user("acme", "anne")
	want := []string{"T-1", "T-2", "T-3", "T-5"}
	for range 2 {
		if got := ids(search(t, pl, anne, filter.Request{})); !slices.Equal(got, want) {
			t.Fatalf("anne: %v", got)
		}
	}
	if p := plan(t, f, search(t, pl, anne, filter.Request{})); p.CachedDecisions != p.Checked {
		t.Fatalf("a repeated search with no write in between was not answered from the cache: %+v", p)
	}
	// A block on T-2: T-2 is checked again, the others still come from the cache.
	if err := b.Write(ctx, []authz.Tuple{{User: "user:anne", Relation: "blocked", Object: "ticket:T-2"}}, nil); err != nil {
		t.Fatal(err)
	}
	resp := search(t, pl, anne, filter.Request{})
	if got := ids(resp); !slices.Equal(got, []string{"T-1", "T-3", "T-5"}) {
		t.Fatalf("after blocking T-2: %v", got)
	}
	if p := plan(t, f, resp); p.CachedDecisions != p.Checked-1 {
		t.Errorf("after a ticket write, want all but T-2 from the cache: %+v", p)
	}
	// A project change (anne leaves zeus): every decision is asked again.
	if err := b.Write(ctx, nil, []authz.Tuple{{User: "user:anne", Relation: "viewer", Object: "project:zeus"}}); err != nil {
		t.Fatal(err)
	}
	resp = search(t, pl, anne, filter.Request{})
	if got := ids(resp); !slices.Equal(got, []string{"T-1"}) {
		t.Fatalf("after leaving zeus: %v", got)
	}
	if p := plan(t, f, resp); p.CachedDecisions != 0 {
		t.Errorf("after a project write, decisions came from the cache: %+v", p)
	}
}

// TestDecisionCacheGrantExpiry: an agent's allowed decision rests on a grant
// that expires; the revision does not move when it does, but the cached
// answer is not served past the expiry. Denials stay cached.
func TestDecisionCacheGrantExpiry(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	base := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	var now atomic.Int64
	now.Store(base.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	eng := &decisionEngine{Engine: f.eng}
	pl := filter.New(filter.Config{Now: clock}, eng, f.store, f.emb, f.log)
	d := "delegation:anne~timed"
	expiring := func(at time.Time) *authz.Condition {
		return &authz.Condition{Name: "not_expired", Context: map[string]any{"expires_at": at.Format(time.RFC3339)}}
	}
	if err := f.eng.Write(ctx, []authz.Tuple{
		{User: "user:anne", Relation: "delegator", Object: d},
		{User: "agent:timed", Relation: "agent", Object: d},
		{User: d, Relation: "granted", Object: "project:apollo", Condition: expiring(base.Add(time.Hour))},
		{User: d, Relation: "granted", Object: "project:zeus", Condition: expiring(base.Add(2 * time.Hour))},
		// Already expired: must not shorten the bound to the past.
		{User: d, Relation: "granted", Object: "project:hermes", Condition: expiring(base.Add(-time.Hour))},
	}, nil); err != nil {
		t.Fatal(err)
	}
	timed := agent("acme", "anne", "timed")
	if got := ids(search(t, pl, timed, filter.Request{})); !slices.Equal(got, []string{"T-1", "T-2", "T-3", "T-5"}) {
		t.Fatalf("at the start: %v", got)
	}
	now.Store(base.Add(59 * time.Minute).UnixNano())
	resp := search(t, pl, timed, filter.Request{})
	if p := plan(t, f, resp); p.CachedDecisions == 0 || p.CachedDecisions != p.Checked {
		t.Errorf("before the first expiry the cache was not used: %+v", p)
	}
	if got := ids(resp); !slices.Equal(got, []string{"T-1", "T-2", "T-3", "T-5"}) {
		t.Fatalf("before the first expiry: %v", got)
	}
	// apollo's grant expired; nothing was written.
	now.Store(base.Add(time.Hour).UnixNano())
	if got := ids(search(t, pl, timed, filter.Request{})); !slices.Equal(got, []string{"T-3", "T-5"}) {
		t.Fatalf("after apollo's grant expired: %v", got)
	}
	now.Store(base.Add(90 * time.Minute).UnixNano())
	resp = search(t, pl, timed, filter.Request{})
	if got := ids(resp); !slices.Equal(got, []string{"T-3", "T-5"}) {
		t.Fatalf("between the expiries: %v", got)
	}
	if p := plan(t, f, resp); p.CachedDecisions != p.Checked {
		t.Errorf("between the expiries the cache was not used: %+v", p)
	}
	now.Store(base.Add(2 * time.Hour).UnixNano())
	if got := ids(search(t, pl, timed, filter.Request{})); len(got) != 0 {
		t.Fatalf("after every grant expired: %v", got)
	}
	// A request whose clock is earlier than an entry's is asked afresh.
	now.Store(base.Add(30 * time.Minute).UnixNano())
	if got := ids(search(t, pl, timed, filter.Request{})); !slices.Equal(got, []string{"T-1", "T-2", "T-3", "T-5"}) {
		t.Fatalf("with the clock set back: %v", got)
	}
}

// revFault is a faultEngine that keeps the engine's revision, reads and list
// of changes, so the decision cache stays on.
type revFault struct {
	*faultEngine
	eng authz.Engine
}

func (e revFault) Revision(ctx context.Context) (authz.Revision, error) {
	return e.eng.(authz.Revisioned).Revision(ctx)
}

func (e revFault) ChangedObjects(from, to authz.Revision) ([]string, bool) {
	if l, ok := e.eng.(authz.ChangeLister); ok {
		return l.ChangedObjects(from, to)
	}
	return nil, false
}

func (e revFault) ClearanceModel() bool { return e.eng.(authz.ClearanceModeled).ClearanceModel() }

func (e revFault) Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	return e.eng.Read(ctx, f)
}

// TestDecisionCacheKeyedByContextualTuples: two agents of one user are checked on
// the same subject and relation; only the contextual tuple (the delegation)
// differs, and one's cached answers never reach the other. Listings are cut
// short so that every tenant ticket is a candidate for both.
func TestDecisionCacheKeyedByContextualTuples(t *testing.T) {
	f := newFixture(t)
	eng := revFault{&faultEngine{Engine: f.eng, truncate: map[string]bool{"can_view": true, "agent_can_view": true}}, f.eng}
	pl := filter.New(filter.Config{}, eng, f.store, f.emb, f.log)
	copilot := agent("acme", "anne", "copilot")
	for range 2 {
		if got := ids(search(t, pl, copilot, filter.Request{})); !slices.Equal(got, []string{"T-1", "T-2"}) {
			t.Fatalf("copilot: %v", got)
		}
	}
	resp := search(t, pl, agent("acme", "anne", "rogue"), filter.Request{})
	if got := ids(resp); len(got) != 0 {
		t.Fatalf("an agent without a grant received %v (plan %+v)", got, plan(t, f, resp))
	}
	if p := plan(t, f, resp); p.Path != filter.PathPostfilterOnly || p.CachedDecisions != 0 {
		t.Fatalf("rogue's plan: %+v", p)
	}
	// And the user's own answers are not the agent's.
	if got := ids(search(t, pl, user("acme", "anne"), filter.Request{})); !slices.Equal(got, []string{"T-1", "T-2", "T-3", "T-5"}) {
		t.Fatalf("anne: %v", got)
	}
	if got := ids(search(t, pl, copilot, filter.Request{})); !slices.Equal(got, []string{"T-1", "T-2"}) {
		t.Fatalf("copilot after anne: %v", got)
	}
}

// TestDecisionCacheFailsClosed: with a warm cache, a failed revision probe
// means no cached decision is served (the engine is asked, and when it fails
// too the search fails); a failing engine fails searches that need it.
func TestDecisionCacheFailsClosed(t *testing.T) {
	f := newFixture(t)
	eng := &decisionEngine{Engine: f.eng}
	pl := filter.New(filter.Config{}, eng, f.store, f.emb, f.log)
	bob := user("acme", "bob")
	search(t, pl, bob, filter.Request{})
	eng.revErr.Store(true)
	before := eng.checks.Load()
	resp := search(t, pl, bob, filter.Request{})
	if p := plan(t, f, resp); p.CachedDecisions != 0 || eng.checks.Load() == before {
		t.Fatalf("cached decisions served with an unknown revision: %+v", p)
	}
	eng.batchErr.Store(true)
	if _, err := pl.Search(context.Background(), bob, filter.Request{Query: "database timeout", TopK: 10}); !errors.Is(err, clearance.ErrUnavailable) {
		t.Fatalf("unknown revision and failing engine: %v, want ErrUnavailable", err)
	}
	// The revision is back but the engine still fails: a search the cache can
	// answer fully is served, one that needs the engine fails.
	eng.revErr.Store(false)
	if _, err := pl.Search(context.Background(), user("acme", "carl"), filter.Request{Query: "database timeout", TopK: 10}); !errors.Is(err, clearance.ErrUnavailable) {
		t.Fatalf("uncached principal with a failing engine: %v, want ErrUnavailable", err)
	}
}

// TestDecisionCacheSizeBound: the cache never holds more than its size, and a
// disabled cache holds nothing.
func TestDecisionCacheSizeBound(t *testing.T) {
	f := newFixture(t)
	small := filter.New(filter.Config{DecisionCacheSize: 3}, f.eng, f.store, f.emb, f.log)
	off := filter.New(filter.Config{DecisionCacheSize: -1}, f.eng, f.store, f.emb, f.log)
	for _, u := range []string{"anne", "bob", "carl", "ada"} {
		search(t, small, user("acme", u), filter.Request{})
		search(t, off, user("acme", u), filter.Request{})
	}
	if s := small.DecisionCacheStats(); s.Entries > 3 || s.Evictions == 0 {
		t.Errorf("small cache: %+v", s)
	}
	if s := off.DecisionCacheStats(); s.Entries != 0 || s.Hits != 0 {
		t.Errorf("disabled cache: %+v", s)
	}
	// An engine that cannot say it evaluates clearance's model gets no cache.
	unknown := filter.New(filter.Config{}, struct {
		authz.Engine
		authz.Revisioned
	}{f.eng, f.eng.(authz.Revisioned)}, f.store, f.emb, f.log)
	for range 2 {
		search(t, unknown, user("acme", "anne"), filter.Request{})
	}
	if s := unknown.DecisionCacheStats(); s.Entries != 0 || s.Hits != 0 {
		t.Errorf("cache on for an engine that does not say its model is clearance's: %+v", s)
	}
}

// TestDecisionCacheInterleaved: several goroutines search and read tickets
// through two planners (replicas when the engines share a datastore) while
// another toggles grants through them in turn. Every search that no write overlapped must answer
// exactly the state of the last acknowledged write.
func TestDecisionCacheInterleaved(t *testing.T) {
	eng := memoryEngine(t)
	testInterleaved(t, eng, eng)
}

func testInterleaved(t *testing.T, a, b authz.Engine) {
	ctx := context.Background()
	f := newFixtureOn(t, a)
	engines := []authz.Engine{a, b}
	planners := []*filter.Planner{f.planner(a, nil, nil), f.planner(b, nil, nil)}
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	// Toggle i grants (odd count) or revokes (even) principal i's access to want[i].
	type toggle struct {
		p     authz.Principal
		tuple authz.Tuple
		block bool // the tuple revokes when present
		want  string
	}
	toggles := []toggle{
		{user("acme", "m"+suffix), authz.Tuple{User: "user:m" + suffix, Relation: "member", Object: "project:zeus"}, false, "T-3"},
		{user("acme", "s"+suffix), authz.Tuple{User: "user:s" + suffix, Relation: "viewer", Object: "ticket:T-4"}, false, "T-4"},
		{user("acme", "bob"), authz.Tuple{User: "user:bob", Relation: "blocked", Object: "ticket:T-5"}, true, "T-5"},
		{agent("acme", "anne", "ag"+suffix), authz.Tuple{User: "delegation:anne~ag" + suffix, Relation: "granted", Object: "project:apollo"}, false, "T-1"},
	}
	if err := a.Write(ctx, []authz.Tuple{
		{User: "user:anne", Relation: "delegator", Object: "delegation:anne~ag" + suffix},
		{User: "agent:ag" + suffix, Relation: "agent", Object: "delegation:anne~ag" + suffix},
	}, nil); err != nil {
		t.Fatal(err)
	}
	visible := func(i int, version int64) bool {
		n := int64(0) // toggles of i among versions 1..version
		if version > int64(i) {
			n = (version-int64(i)-1)/int64(len(toggles)) + 1
		}
		on := n%2 == 1
		if toggles[i].block {
			return !on
		}
		return on
	}
	var started, committed atomic.Int64
	var checked, skipped atomic.Int64
	var failed atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := (g + n) % len(toggles)
				pl := planners[(g+n)%2]
				c := committed.Load()
				// Every third request is a ticket read of the toggled ticket.
				var got []string
				var err error
				if n%3 == 2 {
					var tr filter.TicketResponse
					tr, err = pl.Get(ctx, toggles[i].p, toggles[i].want)
					if errors.Is(err, clearance.ErrNotFound) {
						err = nil
					} else if err == nil {
						got = []string{tr.Ticket.ID}
					}
				} else {
					var resp filter.Response
					resp, err = pl.Search(ctx, toggles[i].p, filter.Request{Query: "database timeout", TopK: 10})
					got = ids(resp)
				}
				if err != nil {
					failed.Store(true)
					errs <- err
					return
				}
				if started.Load() != c {
					skipped.Add(1)
					continue
				}
				checked.Add(1)
				if seen := slices.Contains(got, toggles[i].want); seen != visible(i, c) {
					failed.Store(true)
					errs <- fmt.Errorf("after write %d, %s sees %s: %v, want %v (%v, read %v)", c, toggles[i].p, toggles[i].want, seen, visible(i, c), got, n%3 == 2)
					return
				}
			}
		})
	}
	const writes = 200
	for v := int64(1); v <= writes && !failed.Load(); v++ {
		i := int((v - 1) % int64(len(toggles)))
		on := visible(i, v) != toggles[i].block
		started.Store(v)
		var err error
		w := engines[v%2]
		if on {
			err = w.Write(ctx, []authz.Tuple{toggles[i].tuple}, nil)
		} else {
			err = w.Write(ctx, nil, []authz.Tuple{toggles[i].tuple})
		}
		if err != nil {
			t.Fatal(err)
		}
		before := checked.Load()
		committed.Store(v)
		// Let searches see this state: wait for two that no write overlapped.
		for deadline := time.Now().Add(5 * time.Second); checked.Load() < before+2 && !failed.Load() && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var hits uint64
	for _, pl := range planners {
		hits += pl.DecisionCacheStats().Hits
	}
	t.Logf("%d searches and reads compared with the last write, %d overlapped a write; %d cached decisions", checked.Load(), skipped.Load(), hits)
	if !failed.Load() && checked.Load() < writes {
		t.Errorf("only %d searches compared", checked.Load())
	}
}

// TestDecisionCacheInterleavedPostgres: the same with two replicas, embedded
// engines on one PostgreSQL datastore.
func TestDecisionCacheInterleavedPostgres(t *testing.T) {
	a, b := postgresReplicas(t)
	testInterleaved(t, a, b)
}

// TestDecisionCacheInterleavedRemote: the same with two remote adapters on one
// `openfga run`.
func TestDecisionCacheInterleavedRemote(t *testing.T) {
	a, b := remoteReplicas(t, "interleaved")
	testInterleaved(t, a, b)
}

// TestDecisionCacheKeyedByMinter: a service account's key bounded by its
// minter is checked on both; keys of the same account minted by different
// users never share decisions.
func TestDecisionCacheKeyedByMinter(t *testing.T) {
	f := newFixture(t)
	eng := revFault{&faultEngine{Engine: f.eng, truncate: map[string]bool{"can_view": true, "agent_can_view": true}}, f.eng}
	pl := filter.New(filter.Config{}, eng, f.store, f.emb, f.log)
	sa := func(minter string) authz.Principal {
		return authz.Principal{Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "sa-ci", KeyMinter: minter, AuthMethod: "api_key"}
	}
	for range 2 {
		if got := ids(search(t, pl, sa("bob"), filter.Request{})); !slices.Equal(got, []string{"T-3", "T-5"}) {
			t.Fatalf("minted by bob: %v", got)
		}
	}
	if got := ids(search(t, pl, sa("carl"), filter.Request{})); !slices.Equal(got, []string{"T-3"}) {
		t.Fatalf("minted by carl: %v", got)
	}
}
