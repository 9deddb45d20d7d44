package filter_test

import (
	"context"
	"errors"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
)

// fixture is a small hand-written org in the real embedded engine and store:
//
//	acme: ada admin; anne member of apollo (via team core), viewer of zeus;
//	      bob member of zeus; T-3 (zeus) shared with bob's colleague carl;
//	      anne blocked on T-4 (apollo); anne lets copilot read apollo only;
//	      sa-ci member of zeus.
//	globex: gina member of hermes.
type fixture struct {
	eng   authz.Engine
	store *storeembedded.Store
	emb   *retrieval.Hashing
	log   *filter.MemoryLog
}

var fixtureTickets = []retrieval.Ticket{
	{ID: "T-1", Tenant: "acme", Project: "apollo", Title: "Login outage", Body: "login timeout on the database primary after deploy"},
	{ID: "T-2", Tenant: "acme", Project: "apollo", Title: "Slow search", Body: "search latency spikes on the index shard replica"},
	{ID: "T-3", Tenant: "acme", Project: "zeus", Title: "Refund export", Body: "refund export report fails with a database timeout"},
	{ID: "T-4", Tenant: "acme", Project: "apollo", Title: "Payroll database", Body: "payroll database timeout salary data"},
	{ID: "T-5", Tenant: "acme", Project: "zeus", Title: "Webhook retries", Body: "webhook retry backlog grows in the queue after the database timeout"},
	{ID: "G-1", Tenant: "globex", Project: "hermes", Title: "Database timeout", Body: "database timeout login outage database timeout"},
}

var fixtureTuples = []authz.Tuple{
	{User: "tenant:acme", Relation: "tenant", Object: "project:apollo"},
	{User: "tenant:acme", Relation: "tenant", Object: "project:zeus"},
	{User: "tenant:globex", Relation: "tenant", Object: "project:hermes"},
	{User: "tenant:acme", Relation: "tenant", Object: "service_account:sa-ci"},
	{User: "user:ada", Relation: "admin", Object: "tenant:acme"},
	{User: "user:anne", Relation: "member", Object: "team:core"},
	{User: "team:core#member", Relation: "member", Object: "project:apollo"},
	{User: "user:anne", Relation: "viewer", Object: "project:zeus"},
	{User: "user:bob", Relation: "member", Object: "project:zeus"},
	{User: "user:carl", Relation: "viewer", Object: "ticket:T-3"},
	{User: "user:anne", Relation: "blocked", Object: "ticket:T-4"},
	{User: "service_account:sa-ci", Relation: "member", Object: "project:zeus"},
	{User: "user:gina", Relation: "member", Object: "project:hermes"},
	{User: "user:anne", Relation: "delegator", Object: "delegation:anne~copilot"},
	{User: "agent:copilot", Relation: "agent", Object: "delegation:anne~copilot"},
	{User: "delegation:anne~copilot", Relation: "granted", Object: "project:apollo"},
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, memoryEngine(t))
}

// newFixtureOn loads the fixture's tuples into eng and its tickets into a fresh
// store.
func newFixtureOn(t *testing.T, eng authz.Engine) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{eng: eng, emb: retrieval.NewHashing(retrieval.HashingConfig{Dim: 64}), log: &filter.MemoryLog{}}
	var err error
	f.store, err = storeembedded.Open(ctx, storeembedded.Config{Meta: retrieval.IndexMeta{Model: f.emb.Model(), Dim: f.emb.Dim()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })
	tuples := slices.Clone(fixtureTuples)
	for _, tk := range fixtureTickets {
		v, err := f.emb.Embed(ctx, []string{tk.Title + " " + tk.Body})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.store.Upsert(ctx, tk, []retrieval.Chunk{{Text: tk.Body, Vector: v[0]}}); err != nil {
			t.Fatal(err)
		}
		tuples = append(tuples, authz.Tuple{User: "project:" + tk.Project, Relation: "project", Object: "ticket:" + tk.ID})
	}
	if err := f.eng.Write(ctx, tuples, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) planner(eng filter.Engine, store filter.Store, log audit.Log) *filter.Planner {
	if eng == nil {
		eng = f.eng
	}
	if store == nil {
		store = f.store
	}
	if log == nil {
		log = f.log
	}
	return filter.New(filter.Config{}, eng, store, f.emb, log)
}

func user(tenant, u string) authz.Principal {
	return authz.Principal{Kind: authz.KindUser, Tenant: tenant, User: u, AuthMethod: "dev"}
}

func agent(tenant, u, a string) authz.Principal {
	return authz.Principal{Kind: authz.KindAgent, Tenant: tenant, User: u, Agent: a, AuthMethod: "dev"}
}

func ids(resp filter.Response) []string {
	var out []string
	for _, r := range resp.Results {
		out = append(out, r.TicketID)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func search(t *testing.T, pl *filter.Planner, p authz.Principal, req filter.Request) filter.Response {
	t.Helper()
	if req.Query == "" {
		req.Query = "database timeout"
	}
	if req.TopK == 0 {
		req.TopK = 10
	}
	resp, err := pl.Search(context.Background(), p, req)
	if err != nil {
		t.Fatalf("search as %s: %v", p, err)
	}
	return resp
}

// TestWhoSeesWhat is the permission matrix of the fixture, one principal kind
// and path each.
func TestWhoSeesWhat(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	for _, tc := range []struct {
		p    authz.Principal
		want []string
		path string
	}{
		{user("acme", "ada"), []string{"T-1", "T-2", "T-3", "T-4", "T-5"}, filter.PathTenantAdmin},
		{user("acme", "anne"), []string{"T-1", "T-2", "T-3", "T-5"}, filter.PathPrefilter}, // blocked on T-4
		{user("acme", "bob"), []string{"T-3", "T-5"}, filter.PathPrefilter},
		{user("acme", "carl"), []string{"T-3"}, filter.PathPrefilter},                    // direct share only
		{agent("acme", "anne", "copilot"), []string{"T-1", "T-2"}, filter.PathPrefilter}, // grant on apollo only, T-4 blocked
		{agent("acme", "bob", "copilot"), nil, filter.PathEmpty},                         // no grant
		{authz.Principal{Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "sa-ci"}, []string{"T-3", "T-5"}, filter.PathPrefilter},
		{user("globex", "gina"), []string{"G-1"}, filter.PathPrefilter},
		// anne's acme access is not globex's: her acme projects are listed (ids
		// are global) and the store filter, bound to globex, finds nothing in them.
		{user("globex", "anne"), nil, filter.PathPrefilter},
		{user("acme", "gina"), nil, filter.PathPrefilter},
	} {
		resp := search(t, pl, tc.p, filter.Request{})
		if got := ids(resp); !slices.Equal(got, tc.want) {
			t.Errorf("%s sees %v, want %v", tc.p, got, tc.want)
		}
		if resp.Status != filter.Exhausted {
			t.Errorf("%s: status %s, want exhausted (fewer than 10 visible)", tc.p, resp.Status)
		}
		rec, _ := f.log.Record(resp.AuditID)
		if rec.Plan.Path != tc.path {
			t.Errorf("%s: path %s, want %s", tc.p, rec.Plan.Path, tc.path)
		}
	}
}

func TestIncompletePrincipalRefused(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	for _, p := range []authz.Principal{
		{Kind: authz.KindUser, User: "ada"},
		{Kind: authz.KindAgent, Tenant: "acme", User: "anne"},
		{Kind: authz.KindAgent, Tenant: "acme", Agent: "copilot"},
		{Kind: authz.KindServiceAccount, Tenant: "acme"},
		{Kind: "robot", Tenant: "acme", User: "ada"},
	} {
		if _, err := pl.Search(context.Background(), p, filter.Request{Query: "database", TopK: 3}); !errors.Is(err, clearance.ErrUnauthenticated) {
			t.Errorf("search as %+v: %v", p, err)
		}
		if _, err := pl.Get(context.Background(), p, "T-1"); !errors.Is(err, clearance.ErrUnauthenticated) {
			t.Errorf("get as %+v: %v", p, err)
		}
	}
}

func TestStatusAndGrouping(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	resp := search(t, pl, user("acme", "ada"), filter.Request{TopK: 2})
	if resp.Status != filter.Complete || len(resp.Results) != 2 {
		t.Fatalf("top 2 of 5: %s with %d results", resp.Status, len(resp.Results))
	}
	rec, _ := f.log.Record(resp.AuditID)
	if rec.Query != "database timeout" || rec.QueryHash != audit.QueryHash("database timeout") || rec.TopK != 2 || rec.Latency["total"] <= 0 {
		t.Errorf("audit record incomplete: %+v", rec)
	}
	// A ticket with three matching chunks: three results, or one (its best) grouped.
	ctx := context.Background()
	texts := []string{"database timeout again", "database timeout database timeout", "the database timeout is back"}
	vecs, _ := f.emb.Embed(ctx, texts)
	chunks := make([]retrieval.Chunk, 3)
	for i := range chunks {
		chunks[i] = retrieval.Chunk{Ordinal: i, Text: texts[i], Vector: vecs[i]}
	}
	if err := f.store.Upsert(ctx, retrieval.Ticket{ID: "T-7", Tenant: "acme", Project: "zeus", Title: "again", Body: strings.Join(texts, " ")}, chunks); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.Write(ctx, []authz.Tuple{{User: "project:zeus", Relation: "project", Object: "ticket:T-7"}}, nil); err != nil {
		t.Fatal(err)
	}
	count := func(resp filter.Response) (n int) {
		for _, r := range resp.Results {
			if r.TicketID == "T-7" {
				n++
			}
		}
		return n
	}
	if n := count(search(t, pl, user("acme", "bob"), filter.Request{TopK: 10})); n != 3 {
		t.Errorf("ungrouped: T-7 %d times, want 3", n)
	}
	grouped := search(t, pl, user("acme", "bob"), filter.Request{TopK: 2, GroupByTicket: true})
	if n := count(grouped); n != 1 || len(ids(grouped)) != 2 || grouped.Status != filter.Complete {
		t.Errorf("grouped: T-7 %d times, %v %s", n, ids(grouped), grouped.Status)
	}
	hashed := filter.New(filter.Config{HashQueries: true}, f.eng, f.store, f.emb, f.log)
	resp = search(t, hashed, user("acme", "ada"), filter.Request{TopK: 1})
	if rec, _ := f.log.Record(resp.AuditID); rec.Query != "" || rec.QueryHash == "" {
		t.Errorf("HashQueries kept the text: %q / %q", rec.Query, rec.QueryHash)
	}
}

func TestSnippetCutOnWordBoundary(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	body := strings.Repeat("database timeout wonderful ", 40)
	v, _ := f.emb.Embed(ctx, []string{body})
	if err := f.store.Upsert(ctx, retrieval.Ticket{ID: "T-9", Tenant: "acme", Project: "apollo", Title: "long", Body: body}, []retrieval.Chunk{{Text: body, Vector: v[0]}}); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.Write(ctx, []authz.Tuple{{User: "project:apollo", Relation: "project", Object: "ticket:T-9"}}, nil); err != nil {
		t.Fatal(err)
	}
	resp := search(t, f.planner(nil, nil, nil), user("acme", "ada"), filter.Request{Query: body, TopK: 1})
	s := resp.Results[0].Snippet
	if n := len([]rune(s)); n > 301 || n < 150 || !strings.HasSuffix(s, "…") || !strings.HasPrefix(body, strings.TrimSuffix(s, "…")) {
		t.Errorf("snippet %q", s)
	}
	if w := strings.Fields(strings.TrimSuffix(s, "…")); !slices.Contains([]string{"database", "timeout", "wonderful"}, w[len(w)-1]) {
		t.Errorf("snippet cut inside a word: %q", s)
	}
}

// TestNarrowingNeverWidens: token, request and intent projects only narrow, also
// for direct shares; naming a project of another tenant or one the caller cannot
// see gives an empty, exhausted answer, not an error.
func TestNarrowingNeverWidens(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	anne := user("acme", "anne")
	narrowed := anne
	narrowed.Narrowing = &authz.Narrowing{Projects: []string{"apollo"}}
	carl := user("acme", "carl")
	for _, tc := range []struct {
		name string
		p    authz.Principal
		req  filter.Request
		want []string
	}{
		{"filter", anne, filter.Request{Filters: filter.Filters{Projects: []string{"zeus"}}}, []string{"T-3", "T-5"}},
		{"intent", anne, filter.Request{Intent: filter.Intent{Description: "x", Projects: []string{"apollo"}}}, []string{"T-1", "T-2"}},
		{"token", narrowed, filter.Request{}, []string{"T-1", "T-2"}},
		{"token and filter disjoint", narrowed, filter.Request{Filters: filter.Filters{Projects: []string{"zeus"}}}, nil},
		{"other tenant's project", anne, filter.Request{Filters: filter.Filters{Projects: []string{"hermes"}}}, nil},
		{"invisible project", user("acme", "bob"), filter.Request{Filters: filter.Filters{Projects: []string{"apollo"}}}, nil},
		{"admin other tenant", user("acme", "ada"), filter.Request{Filters: filter.Filters{Projects: []string{"hermes"}}}, nil},
		{"direct share outside narrowing", carl, filter.Request{Filters: filter.Filters{Projects: []string{"apollo"}}}, nil},
		{"direct share inside narrowing", carl, filter.Request{Filters: filter.Filters{Projects: []string{"zeus"}}}, []string{"T-3"}},
		{"empty token narrowing", authz.Principal{Kind: authz.KindUser, Tenant: "acme", User: "ada", Narrowing: &authz.Narrowing{Projects: []string{}}}, filter.Request{}, nil},
	} {
		resp := search(t, pl, tc.p, tc.req)
		if got := ids(resp); !slices.Equal(got, tc.want) || resp.Status != filter.Exhausted {
			t.Errorf("%s: %v (%s), want %v (exhausted)", tc.name, got, resp.Status, tc.want)
		}
		rec, _ := f.log.Record(resp.AuditID)
		n := rec.Narrowing
		if len(n.FilterProjects) != len(tc.req.Filters.Projects) || len(n.IntentProjects) != len(tc.req.Intent.Projects) ||
			(tc.p.Narrowing != nil) != (n.TokenProjects != nil) {
			t.Errorf("%s: narrowing not recorded: %+v", tc.name, n)
		}
	}
}

// nonRevisioned hides the embedded engine's revision, like a remote OpenFGA: the
// pre-filter cache then lives for its TTL even across writes.
type nonRevisioned struct{ filter.Engine }

// TestRevocationOnNextQuery: a deleted tuple stops a ticket on the very next
// search, even when the pre-filter comes from a stale cache (remote mode).
func TestRevocationOnNextQuery(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	pl := filter.New(filter.Config{CacheTTL: time.Hour}, nonRevisioned{f.eng}, f.store, f.emb, f.log)
	bob := user("acme", "bob")
	if got := ids(search(t, pl, bob, filter.Request{})); !slices.Equal(got, []string{"T-3", "T-5"}) {
		t.Fatalf("before: %v", got)
	}
	if err := f.eng.Write(ctx, nil, []authz.Tuple{{User: "user:bob", Relation: "member", Object: "project:zeus"}}); err != nil {
		t.Fatal(err)
	}
	resp := search(t, pl, bob, filter.Request{})
	if got := ids(resp); len(got) != 0 {
		t.Fatalf("after revocation bob still gets %v", got)
	}
	rec, _ := f.log.Record(resp.AuditID)
	if !rec.Plan.CacheHit || rec.Plan.Denied == 0 {
		t.Errorf("expected a stale cache hit denied by the post-filter: %+v", rec.Plan)
	}
	if rec.Plan.CacheTTL != "1h0m0s" || rec.Plan.Revision != "" {
		t.Errorf("audit record does not state the TTL fallback: %+v", rec.Plan)
	}
	// A block revokes an admin too.
	if err := f.eng.Write(ctx, []authz.Tuple{{User: "user:ada", Relation: "blocked", Object: "ticket:T-1"}}, nil); err != nil {
		t.Fatal(err)
	}
	if got := ids(search(t, pl, user("acme", "ada"), filter.Request{})); slices.Contains(got, "T-1") {
		t.Errorf("blocked admin still gets T-1: %v", got)
	}
}

// TestCacheExactInvalidation: with the embedded engine the cache is keyed by the
// tuple revision, so a write makes the next search list again.
func TestCacheExactInvalidation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	carl := user("acme", "carl")
	plan := func() audit.Plan {
		resp := search(t, pl, carl, filter.Request{})
		rec, _ := f.log.Record(resp.AuditID)
		return rec.Plan
	}
	if p := plan(); p.CacheHit || p.DirectTickets != 1 {
		t.Fatalf("first: %+v", p)
	}
	p := plan()
	if !p.CacheHit {
		t.Fatalf("second search missed the cache: %+v", p)
	}
	if !strings.HasPrefix(p.Revision, "process:") || p.CacheTTL != "" {
		t.Errorf("audit record does not state the revision: %+v", p)
	}
	if err := f.eng.Write(ctx, []authz.Tuple{{User: "user:carl", Relation: "member", Object: "project:apollo"}}, nil); err != nil {
		t.Fatal(err)
	}
	if p := plan(); p.CacheHit || p.AllowedProjects != 1 {
		t.Fatalf("after a write the cache answered: %+v", p)
	}
}

// brokenRevision is an engine whose revision probe fails.
type brokenRevision struct{ filter.Engine }

func (brokenRevision) Revision(context.Context) (authz.Revision, error) {
	return authz.Revision{}, authz.ErrUnavailable
}

// TestRevisionUnknown: when the engine cannot tell its revision, the pre-filter
// is listed afresh every time (never from the cache) and the record says so.
func TestRevisionUnknown(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	pl := filter.New(filter.Config{CacheTTL: time.Hour}, brokenRevision{f.eng}, f.store, f.emb, f.log)
	carl := user("acme", "carl")
	search(t, pl, carl, filter.Request{})
	if err := f.eng.Write(ctx, []authz.Tuple{{User: "user:carl", Relation: "member", Object: "project:apollo"}}, nil); err != nil {
		t.Fatal(err)
	}
	resp := search(t, pl, carl, filter.Request{})
	rec, _ := f.log.Record(resp.AuditID)
	if rec.Plan.CacheHit || rec.Plan.AllowedProjects != 1 || rec.Plan.Revision != "" || len(rec.Plan.Notes) == 0 {
		t.Errorf("plan with an unknown revision: %+v", rec.Plan)
	}
}

func TestGet(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	ctx := context.Background()
	got, err := pl.Get(ctx, user("acme", "anne"), "T-1")
	if err != nil || got.Ticket.ID != "T-1" || got.AuditID == "" {
		t.Fatalf("anne T-1: %+v, %v", got, err)
	}
	var msgs []string
	for _, tc := range []struct {
		p  authz.Principal
		id string
	}{
		{user("acme", "anne"), "T-4"},             // blocked
		{user("acme", "bob"), "T-1"},              // not a member
		{agent("acme", "anne", "copilot"), "T-3"}, // no grant on zeus
		{user("acme", "anne"), "G-1"},             // other tenant
		{user("acme", "anne"), "T-404"},           // missing
		{user("acme", "ada"), "G-1"},              // admin of the other tenant
		{authz.Principal{Kind: authz.KindUser, Tenant: "acme", User: "anne", Narrowing: &authz.Narrowing{Projects: []string{"zeus"}}}, "T-1"},
	} {
		_, err := pl.Get(ctx, tc.p, tc.id)
		if !errors.Is(err, clearance.ErrNotFound) {
			t.Fatalf("%s %s: %v, want not found", tc.p, tc.id, err)
		}
		msgs = append(msgs, err.Error())
	}
	if len(slices.Compact(slices.Clone(msgs))) != 1 {
		t.Errorf("invisible and missing answer differently: %q", msgs)
	}
	recs := f.log.Records()
	if len(recs) != 8 {
		t.Fatalf("%d audit records for 8 reads", len(recs))
	}
	for _, r := range recs {
		for _, c := range r.Results {
			if strings.HasPrefix(c.TicketID, "G-") {
				t.Errorf("acme's audit record names globex's ticket: %+v", r)
			}
		}
	}
}

// TestFirstCheckBatchIsWhatIsMissing: on an exact pre-filter the first BatchCheck
// asks about exactly the tickets still missing (the floor's k checks); a denial
// costs a second batch, never a wrong or short answer.
func TestFirstCheckBatchIsWhatIsMissing(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	for _, tc := range []struct {
		name        string
		p           authz.Principal
		query       string
		k           int
		wantChecked int
		want        []string
	}{
		{"member", user("acme", "bob"), "webhook retry backlog", 1, 1, []string{"T-5"}},
		{"tenant admin", user("acme", "ada"), "database timeout", 2, 2, nil},
		// anne is blocked on T-4, the best match: one denial, then a second batch
		// sized by the observed allow rate (-1: at least 2).
		{"blocked first", user("acme", "anne"), "payroll database timeout salary data", 1, -1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := search(t, pl, tc.p, filter.Request{Query: tc.query, TopK: tc.k, GroupByTicket: true})
			rec, _ := f.log.Record(resp.AuditID)
			if tc.wantChecked < 0 && (rec.Plan.Checked < 2 || rec.Plan.Denied != 1) {
				t.Errorf("checked %d, denied %d: want the first ticket denied and a second batch (plan %+v)", rec.Plan.Checked, rec.Plan.Denied, rec.Plan)
			}
			if tc.wantChecked >= 0 && rec.Plan.Checked != tc.wantChecked {
				t.Errorf("checked %d tickets, want %d (plan %+v)", rec.Plan.Checked, tc.wantChecked, rec.Plan)
			}
			if len(resp.Results) != tc.k {
				t.Fatalf("got %d results, want %d", len(resp.Results), tc.k)
			}
			if tc.want != nil && !slices.Equal(ids(resp), tc.want) {
				t.Errorf("results %v, want %v", ids(resp), tc.want)
			}
			for _, r := range resp.Results {
				if tc.p.User == "anne" && r.TicketID == "T-4" {
					t.Fatal("blocked ticket returned")
				}
			}
		})
	}
}

// TestFirstCheckBatchCountsResults: the first batch checks the tickets of the
// next k results, not k tickets: a ticket whose three chunks are the top three
// results is the whole first batch of a top-3 search (the old batch checked
// three tickets, covering twice as many results as needed).
func TestFirstCheckBatchCountsResults(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	texts := []string{"zebra quokka marmot one", "zebra quokka marmot two", "zebra quokka marmot three"}
	vecs, _ := f.emb.Embed(ctx, texts)
	chunks := make([]retrieval.Chunk, len(texts))
	for i := range chunks {
		chunks[i] = retrieval.Chunk{Ordinal: i, Text: texts[i], Vector: vecs[i]}
	}
	if err := f.store.Upsert(ctx, retrieval.Ticket{ID: "T-7", Tenant: "acme", Project: "zeus", Title: "zebra", Body: strings.Join(texts, " ")}, chunks); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.Write(ctx, []authz.Tuple{{User: "project:zeus", Relation: "project", Object: "ticket:T-7"}}, nil); err != nil {
		t.Fatal(err)
	}
	resp := search(t, pl, user("acme", "bob"), filter.Request{Query: "zebra quokka marmot", TopK: 3})
	if len(resp.Results) != 3 || !slices.Equal(ids(resp), []string{"T-7"}) {
		t.Fatalf("results %+v, want T-7's three chunks", resp.Results)
	}
	rec, _ := f.log.Record(resp.AuditID)
	if rec.Plan.Checked != 1 || rec.Plan.Rounds != 1 {
		t.Errorf("checked %d tickets in %d rounds, want 1 in 1 (plan %+v)", rec.Plan.Checked, rec.Plan.Rounds, rec.Plan)
	}
	// Grouped, the same search needs three tickets: the batch grows to them.
	resp = search(t, pl, user("acme", "bob"), filter.Request{Query: "zebra quokka marmot", TopK: 3, GroupByTicket: true})
	if len(resp.Results) != 3 || resp.Results[0].TicketID != "T-7" {
		t.Fatalf("grouped results %v", ids(resp))
	}
}

// listCounter counts an engine's listings by relation; Read is passed through
// (or fails with readErr), so the planner reads an agent's grants.
type listCounter struct {
	authz.Engine
	mu      sync.Mutex
	lists   map[string]int
	readErr error
}

func (c *listCounter) ListObjects(ctx context.Context, q authz.Query, user, relation, typ string) iter.Seq2[string, error] {
	c.mu.Lock()
	c.lists[relation]++
	c.mu.Unlock()
	return c.Engine.ListObjects(ctx, q, user, relation, typ)
}

func (c *listCounter) Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	if c.readErr != nil {
		return func(yield func(authz.Tuple, error) bool) { yield(authz.Tuple{}, c.readErr) }
	}
	return c.Engine.(interface {
		Read(context.Context, authz.TupleFilter) iter.Seq2[authz.Tuple, error]
	}).Read(ctx, f)
}

// TestAgentSharesListedOnlyForOutsideGrants: an agent's user's direct shares
// are listed only when the delegation grants a project outside the agent's
// listed projects (anne's copilot is granted apollo, where anne is a member:
// no share listing, and the answer is the same); carl's copilot is granted
// zeus, where carl only has a share (T-3): the shares are listed and T-3 is
// found. A failed read of the grants fails the search.
func TestAgentSharesListedOnlyForOutsideGrants(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if err := f.eng.Write(ctx, []authz.Tuple{
		{User: "user:carl", Relation: "delegator", Object: "delegation:carl~copilot"},
		{User: "agent:copilot", Relation: "agent", Object: "delegation:carl~copilot"},
		{User: "delegation:carl~copilot", Relation: "granted", Object: "project:zeus"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	plain := f.planner(&faultEngine{Engine: f.eng}, nil, nil) // no Read: lists shares always
	for _, tc := range []struct {
		p          authz.Principal
		wantShares int
	}{
		{agent("acme", "anne", "copilot"), 0},
		{agent("acme", "carl", "copilot"), 1},
	} {
		eng := &listCounter{Engine: f.eng, lists: map[string]int{}}
		pl := filter.New(filter.Config{CacheSize: -1, DecisionCacheSize: -1}, eng, f.store, f.emb, f.log)
		got := search(t, pl, tc.p, filter.Request{Query: "database timeout refund export", TopK: 5})
		want := search(t, plain, tc.p, filter.Request{Query: "database timeout refund export", TopK: 5})
		if eng.lists["shared"] != tc.wantShares {
			t.Errorf("%s: %d share listings, want %d", tc.p, eng.lists["shared"], tc.wantShares)
		}
		if !slices.Equal(ids(got), ids(want)) || got.Status != want.Status {
			t.Errorf("%s: %v %s, want %v %s", tc.p, ids(got), got.Status, ids(want), want.Status)
		}
		if tc.p.User == "carl" && !slices.Equal(ids(got), []string{"T-3"}) {
			t.Errorf("carl's copilot: %v, want T-3 (shared with carl, zeus granted)", ids(got))
		}
		failing := filter.New(filter.Config{}, &listCounter{Engine: f.eng, lists: map[string]int{}, readErr: errors.New("connection reset")}, f.store, f.emb, f.log)
		resp, err := failing.Search(ctx, tc.p, filter.Request{Query: "database timeout", TopK: 5})
		if !errors.Is(err, clearance.ErrUnavailable) || resp.Results != nil {
			t.Errorf("%s with the grants' read failing: %d results, %v", tc.p, len(resp.Results), err)
		}
	}
}

// rendezvous makes the embedder and the engine's first listing wait for each
// other: a planner that embeds only after the pre-filter (or lists only after
// embedding) never gets past it.
type rendezvous struct {
	authz.Engine
	emb           filter.Embedder
	listing, embd chan struct{}
	once1, once2  sync.Once
}

func (r *rendezvous) ListObjects(ctx context.Context, q authz.Query, user, relation, typ string) iter.Seq2[string, error] {
	r.once1.Do(func() { close(r.listing) })
	select {
	case <-r.embd:
	case <-ctx.Done():
		return func(yield func(string, error) bool) { yield("", ctx.Err()) }
	}
	return r.Engine.ListObjects(ctx, q, user, relation, typ)
}

func (r *rendezvous) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	r.once2.Do(func() { close(r.embd) })
	select {
	case <-r.listing:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.emb.Embed(ctx, texts)
}

// TestEmbedAlongsidePrefilter: the query is embedded while the pre-filter
// lists, not after it.
func TestEmbedAlongsidePrefilter(t *testing.T) {
	f := newFixture(t)
	rv := &rendezvous{Engine: f.eng, emb: f.emb, listing: make(chan struct{}), embd: make(chan struct{})}
	pl := filter.New(filter.Config{CacheSize: -1, DecisionCacheSize: -1}, rv, f.store, rv, f.log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := pl.Search(ctx, user("acme", "bob"), filter.Request{Query: "webhook retry backlog", TopK: 1})
	if err != nil || len(resp.Results) != 1 {
		t.Fatalf("%v, %d results: the embedding waited for the pre-filter", err, len(resp.Results))
	}
}

// TestPrefilterListsNoTenantProjects: the pre-filter lists the principal's
// projects (and shares) only, not the tenant's own projects to intersect them
// with (a listing of the whole tenant on every cold search); a principal with
// roles in another tenant's projects still sees nothing of them there, and
// the request naming only another tenant's project is empty and exhausted.
func TestPrefilterListsNoTenantProjects(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		p    authz.Principal
		req  filter.Request
		want []string
	}{
		{user("acme", "bob"), filter.Request{}, []string{"T-3", "T-5"}},
		{agent("acme", "anne", "copilot"), filter.Request{}, []string{"T-1", "T-2"}},
		{authz.Principal{Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "sa-ci"}, filter.Request{}, []string{"T-3", "T-5"}},
		{user("globex", "anne"), filter.Request{}, nil},
		{user("acme", "gina"), filter.Request{}, nil},
		{user("acme", "gina"), filter.Request{Filters: filter.Filters{Projects: []string{"hermes"}}}, nil},
	} {
		eng := &listCounter{Engine: f.eng, lists: map[string]int{}}
		pl := filter.New(filter.Config{CacheSize: -1, DecisionCacheSize: -1}, eng, f.store, f.emb, f.log)
		resp := search(t, pl, tc.p, tc.req)
		if got := ids(resp); !slices.Equal(got, tc.want) || resp.Status != filter.Exhausted {
			t.Errorf("%s: %v %s, want %v exhausted", tc.p, got, resp.Status, tc.want)
		}
		if eng.lists["tenant"] != 0 {
			t.Errorf("%s: %d listings of the tenant's projects, want none", tc.p, eng.lists["tenant"])
		}
	}
}
