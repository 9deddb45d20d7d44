// Package storetest is the conformance suite every retrieval.Store passes.
//
// A backend's test calls Run with an Opener that creates a fresh, empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, meta retrieval.IndexMeta) retrieval.Store {
//			s, err := mystore.Open(ctx, mystore.Config{Meta: meta, ...})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		}, storetest.Options{})
//	}
//
// Every subtest opens its own store and closes it when done, so the Opener should
// give each call its own location (directory, database, collection) and register
// any cleanup of that location with t.Cleanup. Persistent stores set
// Options.Reopen so the suite can close a store and open the same data again.
//
// The suite checks rankings against a brute-force reference evaluated in float64:
// a hit may swap places with another only when their reference scores are within
// ScoreTolerance. Exact ties (identical vectors) must be ordered by (TicketID,
// Ordinal) ascending, which is what makes paging stable across stores. TicketID
// order is byte order (Go's string comparison; COLLATE "C" in SQL), never a
// locale's collation.
package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
)

// Opener creates a fresh, empty store for the embedding space meta.
// It fails the test itself if the store cannot be created.
type Opener func(t *testing.T, meta retrieval.IndexMeta) retrieval.Store

// Options adapts the suite to a backend.
type Options struct {
	// Reopen, for persistent stores, opens the data of closed (a store returned by
	// the Opener and already closed by the suite) again with meta. It returns the
	// open error instead of failing, so the suite can check ErrIndexMismatch.
	// Nil skips the reopen and index-mismatch tests.
	Reopen func(t *testing.T, closed retrieval.Store, meta retrieval.IndexMeta) (retrieval.Store, error)
}

// ScoreTolerance is how far a store's score may differ from the float64
// reference, and how close two reference scores must be for their hits to be
// allowed to swap places.
const ScoreTolerance = 1e-4

// Meta is the embedding space the suite opens stores with.
var Meta = retrieval.IndexMeta{Model: "storetest-v1", Dim: 24}

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, open Opener, opts Options) {
	tests := []struct {
		name string
		fn   func(*testing.T, *fixture)
	}{
		{"TopKMatchesBruteForce", testTopK},
		{"TiesOrderedByTicketAndOrdinal", testTies},
		{"HitFields", testHitFields},
		{"TenantIsolation", testTenantIsolation},
		{"ProjectsOrTickets", testProjectsOrTickets},
		{"AllProjects", testAllProjects},
		{"EmptyFilterMatchesNothing", testEmptyFilter},
		{"HugeProjectFilter", testHugeFilter},
		{"CountMatchesReference", testCount},
		{"UpsertReplacesChunks", testUpsertReplaces},
		{"UpsertIntoOtherProjectAndTenant", testReupsertElsewhere},
		{"Delete", testDelete},
		{"Move", testMove},
		{"GetAndNotFound", testGet},
		{"TicketsAndStats", testTicketsAndStats},
		{"PagingWithoutGapsOrDuplicates", testPaging},
		{"InvalidInputWritesNothing", testInvalid},
		{"ConcurrentReadersSeeWholeTickets", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newFixture(t, open, Meta))
		})
	}
	runLexical(t, open)
	t.Run("ReopenAfterClose", func(t *testing.T) {
		if opts.Reopen == nil {
			t.Skip("store is not persistent (Options.Reopen is nil)")
		}
		testReopen(t, open, opts.Reopen)
	})
	t.Run("ReopenWithOtherModelOrDim", func(t *testing.T) {
		if opts.Reopen == nil {
			t.Skip("store is not persistent (Options.Reopen is nil)")
		}
		testMismatch(t, open, opts.Reopen)
	})
}

// fixture is a store under test next to a reference model of what it should hold.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	s     retrieval.Store
	ref   *model
	rng   *rand.Rand
	dim   int
	close func()
}

func newFixture(t *testing.T, open Opener, meta retrieval.IndexMeta) *fixture {
	t.Helper()
	s := open(t, meta)
	var once sync.Once
	f := &fixture{
		t: t, ctx: t.Context(), s: s, ref: newModel(), dim: meta.Dim,
		rng: rand.New(rand.NewPCG(uint64(len(t.Name())), 42)),
	}
	f.close = func() {
		once.Do(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(f.close)
	return f
}

// model is the brute-force reference: tickets and chunks in maps, searched by
// scoring every chunk in float64.
type model struct {
	tickets map[string]retrieval.Ticket
	chunks  map[string][]retrieval.Chunk
}

func newModel() *model {
	return &model{tickets: map[string]retrieval.Ticket{}, chunks: map[string][]retrieval.Chunk{}}
}

func (m *model) matches(t retrieval.Ticket, f retrieval.Filter) bool {
	if f.Tenant == "" || t.Tenant != f.Tenant {
		return false
	}
	return f.AllProjects || slices.Contains(f.Projects, t.Project) || slices.Contains(f.Tickets, t.ID)
}

type refHit struct {
	retrieval.Hit
	score float64
}

func (m *model) search(q []float32, f retrieval.Filter) []refHit {
	var out []refHit
	for id, t := range m.tickets {
		if !m.matches(t, f) {
			continue
		}
		for _, c := range m.chunks[id] {
			s := dot64(q, c.Vector)
			out = append(out, refHit{Hit: retrieval.Hit{
				TicketID: id, Tenant: t.Tenant, Project: t.Project, Title: t.Title,
				Ordinal: c.Ordinal, Text: c.Text, Score: float32(s),
			}, score: s})
		}
	}
	slices.SortFunc(out, func(a, b refHit) int {
		if a.score != b.score {
			return cmp.Compare(b.score, a.score)
		}
		return compareKey(a.Hit, b.Hit)
	})
	return out
}

func (m *model) count(f retrieval.Filter) int {
	n := 0
	for id, t := range m.tickets {
		if m.matches(t, f) {
			n += len(m.chunks[id])
		}
	}
	return n
}

func compareKey(a, b retrieval.Hit) int {
	return cmp.Or(strings.Compare(a.TicketID, b.TicketID), cmp.Compare(a.Ordinal, b.Ordinal))
}

func dot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// unitVector returns a random unit vector.
func (f *fixture) unitVector() []float32 {
	v := make([]float32, f.dim)
	var n float64
	for i := range v {
		x := f.rng.NormFloat64()
		v[i] = float32(x)
		n += x * x
	}
	n = math.Sqrt(n)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return v
}

// ticket builds a ticket with deterministic metadata.
func ticket(id, tenant, project string) retrieval.Ticket {
	return retrieval.Ticket{
		ID: id, Tenant: tenant, Project: project,
		Title:       "title of " + id,
		Body:        "body of " + id,
		UpdatedAt:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		ContentHash: "hash-" + id,
	}
}

// chunks builds n chunks with random vectors.
func (f *fixture) chunks(id string, n int) []retrieval.Chunk {
	out := make([]retrieval.Chunk, n)
	for i := range out {
		out[i] = retrieval.Chunk{Ordinal: i, Text: fmt.Sprintf("%s chunk %d", id, i), Vector: f.unitVector()}
	}
	return out
}

func (f *fixture) upsert(t retrieval.Ticket, cs []retrieval.Chunk) {
	f.t.Helper()
	if err := f.s.Upsert(f.ctx, t, cs); err != nil {
		f.t.Fatalf("Upsert(%s): %v", t.ID, err)
	}
	f.ref.tickets[t.ID] = t
	f.ref.chunks[t.ID] = slices.Clone(cs)
}

func (f *fixture) delete(id string) {
	f.t.Helper()
	if err := f.s.Delete(f.ctx, id); err != nil {
		f.t.Fatalf("Delete(%s): %v", id, err)
	}
	delete(f.ref.tickets, id)
	delete(f.ref.chunks, id)
}

func (f *fixture) move(id, project string) {
	f.t.Helper()
	if err := f.s.Move(f.ctx, id, project); err != nil {
		f.t.Fatalf("Move(%s, %s): %v", id, project, err)
	}
	tk := f.ref.tickets[id]
	tk.Project = project
	f.ref.tickets[id] = tk
}

// populate fills the store with random tickets: tenants × projects, 1-4 chunks
// each. Both tenants use the same project names, so tenant isolation is tested.
func (f *fixture) populate(tenants []string, projects, tickets int) {
	f.t.Helper()
	for _, tn := range tenants {
		for i := range tickets {
			p := fmt.Sprintf("p%d", f.rng.IntN(projects))
			id := fmt.Sprintf("%s-T%04d", tn, i)
			f.upsert(ticket(id, tn, p), f.chunks(id, 1+f.rng.IntN(4)))
		}
	}
}

func (f *fixture) search(r retrieval.SearchRequest) []retrieval.Hit {
	f.t.Helper()
	res, err := f.s.Search(f.ctx, r)
	if err != nil {
		f.t.Fatalf("Search(filter %+v, k %d, offset %d): %v", r.Filter, r.K, r.Offset, err)
	}
	// Every answer names its plan; the audit record and the response's exact
	// flag come from it. (The ranking itself is compared with the exact
	// reference by the callers, whatever the store claims.)
	if res.Plan == "" {
		f.t.Fatalf("Search(filter %+v, k %d, offset %d): no plan reported", r.Filter, r.K, r.Offset)
	}
	if (res.Plan == retrieval.PlanExact && !res.Exact) || (res.Plan == retrieval.PlanHNSW && res.Exact) {
		f.t.Fatalf("Search(filter %+v): plan %q with exact %v", r.Filter, res.Plan, res.Exact)
	}
	return res.Hits
}

// checkSearch runs a search and compares it with the reference.
func (f *fixture) checkSearch(q []float32, flt retrieval.Filter, k, offset int) []retrieval.Hit {
	f.t.Helper()
	got := f.search(retrieval.SearchRequest{Vector: q, Filter: flt, K: k, Offset: offset})
	all := f.ref.search(q, flt)
	var want []refHit
	if offset < len(all) {
		want = all[offset:min(len(all), offset+k)]
	}
	f.compare(got, want, all, flt)
	return got
}

// compare checks a store's ranking against the reference: same length, same hit
// at each position unless the reference scores there are within tolerance, each
// hit's score and metadata right, no duplicates, scores non-increasing.
func (f *fixture) compare(got []retrieval.Hit, want, all []refHit, flt retrieval.Filter) {
	f.t.Helper()
	byKey := map[[2]string]refHit{}
	for _, h := range all {
		byKey[key(h.Hit)] = h
	}
	if len(got) != len(want) {
		f.t.Fatalf("filter %+v: got %d hits, want %d\n got: %s\nwant: %s", flt, len(got), len(want), fmtHits(got), fmtRef(want))
	}
	seen := map[[2]string]bool{}
	for i, h := range got {
		r, ok := byKey[key(h)]
		if !ok {
			f.t.Fatalf("filter %+v: hit %d (%s/%d) does not match the filter or does not exist", flt, i, h.TicketID, h.Ordinal)
		}
		if seen[key(h)] {
			f.t.Fatalf("filter %+v: hit %s/%d returned twice", flt, h.TicketID, h.Ordinal)
		}
		seen[key(h)] = true
		if math.Abs(float64(h.Score)-r.score) > ScoreTolerance {
			f.t.Fatalf("hit %s/%d: score %v, reference %v", h.TicketID, h.Ordinal, h.Score, r.score)
		}
		if h.Tenant != r.Tenant || h.Project != r.Project || h.Title != r.Title || h.Text != r.Text {
			f.t.Fatalf("hit %s/%d: got tenant %q project %q title %q text %q, want %q %q %q %q",
				h.TicketID, h.Ordinal, h.Tenant, h.Project, h.Title, h.Text, r.Tenant, r.Project, r.Title, r.Text)
		}
		if key(h) != key(want[i].Hit) && math.Abs(r.score-want[i].score) > ScoreTolerance {
			f.t.Fatalf("filter %+v: position %d is %s/%d (score %v), want %s/%d (score %v)\n got: %s\nwant: %s",
				flt, i, h.TicketID, h.Ordinal, r.score, want[i].TicketID, want[i].Ordinal, want[i].score, fmtHits(got), fmtRef(want))
		}
		if i > 0 && h.Score > got[i-1].Score+ScoreTolerance {
			f.t.Fatalf("scores not in descending order at %d: %v after %v", i, h.Score, got[i-1].Score)
		}
	}
}

func key(h retrieval.Hit) [2]string { return [2]string{h.TicketID, fmt.Sprint(h.Ordinal)} }

func fmtHits(hs []retrieval.Hit) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%s/%d(%.5f) ", h.TicketID, h.Ordinal, h.Score)
	}
	return b.String()
}

func fmtRef(hs []refHit) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%s/%d(%.5f) ", h.TicketID, h.Ordinal, h.score)
	}
	return b.String()
}

func (f *fixture) checkCount(flt retrieval.Filter) {
	f.t.Helper()
	n, err := f.s.Count(f.ctx, flt)
	if err != nil {
		f.t.Fatalf("Count(%+v): %v", flt, err)
	}
	if want := f.ref.count(flt); n != want {
		f.t.Fatalf("Count(%+v) = %d, want %d", flt, n, want)
	}
}

// checkAll compares searches, counts, Get and Tickets for the whole state.
func (f *fixture) checkAll() {
	f.t.Helper()
	tenants := map[string]bool{}
	projects := map[string]bool{}
	for _, tk := range f.ref.tickets {
		tenants[tk.Tenant] = true
		projects[tk.Project] = true
	}
	q := f.unitVector()
	ls, lexOK := f.s.(retrieval.LexicalSearcher)
	for tn := range tenants {
		if lexOK {
			f.lexCheck(ls, "chunk 1 acme-T0001", retrieval.Filter{Tenant: tn, AllProjects: true}, 20, 0)
			for p := range projects {
				f.lexCheck(ls, "title 0 T0003", retrieval.Filter{Tenant: tn, Projects: []string{p}}, 10, 0)
			}
		}
		f.checkSearch(q, retrieval.Filter{Tenant: tn, AllProjects: true}, 20, 0)
		f.checkCount(retrieval.Filter{Tenant: tn, AllProjects: true})
		for p := range projects {
			f.checkSearch(q, retrieval.Filter{Tenant: tn, Projects: []string{p}}, 10, 0)
			f.checkCount(retrieval.Filter{Tenant: tn, Projects: []string{p}})
		}
	}
	for id, want := range f.ref.tickets {
		got, err := f.s.Get(f.ctx, id)
		if err != nil {
			f.t.Fatalf("Get(%s): %v", id, err)
		}
		checkTicket(f.t, got, want)
	}
	f.checkTickets()
}

func checkTicket(t *testing.T, got, want retrieval.Ticket) {
	t.Helper()
	if got.ID != want.ID || got.Tenant != want.Tenant || got.Project != want.Project ||
		got.Title != want.Title || got.Body != want.Body || got.ContentHash != want.ContentHash ||
		!got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("Get(%s) = %+v, want %+v", want.ID, got, want)
	}
}

func (f *fixture) checkTickets() {
	f.t.Helper()
	got := map[string]retrieval.TicketRef{}
	for ref, err := range f.s.Tickets(f.ctx) {
		if err != nil {
			f.t.Fatalf("Tickets: %v", err)
		}
		if _, dup := got[ref.ID]; dup {
			f.t.Fatalf("Tickets yielded %s twice", ref.ID)
		}
		got[ref.ID] = ref
	}
	if len(got) != len(f.ref.tickets) {
		f.t.Fatalf("Tickets yielded %d tickets, want %d", len(got), len(f.ref.tickets))
	}
	for id, want := range f.ref.tickets {
		r, ok := got[id]
		if !ok {
			f.t.Fatalf("Tickets did not yield %s", id)
		}
		if r.Tenant != want.Tenant || r.Project != want.Project || r.ContentHash != want.ContentHash ||
			!r.UpdatedAt.Equal(want.UpdatedAt) || r.Chunks != len(f.ref.chunks[id]) {
			f.t.Fatalf("Tickets: %+v, want tenant %q project %q hash %q updated %v chunks %d",
				r, want.Tenant, want.Project, want.ContentHash, want.UpdatedAt, len(f.ref.chunks[id]))
		}
	}
}

func testTopK(t *testing.T, f *fixture) {
	f.populate([]string{"acme", "globex"}, 8, 150)
	for range 20 {
		q := f.unitVector()
		tn := []string{"acme", "globex"}[f.rng.IntN(2)]
		var ps []string
		for range 1 + f.rng.IntN(3) {
			ps = append(ps, fmt.Sprintf("p%d", f.rng.IntN(8)))
		}
		f.checkSearch(q, retrieval.Filter{Tenant: tn, Projects: ps}, 10, 0)
		f.checkSearch(q, retrieval.Filter{Tenant: tn, AllProjects: true}, 25, 0)
		f.checkSearch(q, retrieval.Filter{Tenant: tn, Projects: ps}, 1000, 0) // k beyond the matches
	}
}

func testTies(t *testing.T, f *fixture) {
	// Every chunk has the same vector, so every score is exactly equal and only the
	// (TicketID, Ordinal) order decides.
	v := f.unitVector()
	// Byte order, not a locale's: "B-1" < "a-1" (in SQL: COLLATE "C").
	ids := []string{"b-2", "a-10", "a-9", "c", "a-1", "B-1"}
	for i, id := range ids {
		cs := make([]retrieval.Chunk, 3)
		for o := range cs {
			cs[o] = retrieval.Chunk{Ordinal: o, Text: fmt.Sprintf("%s/%d", id, o), Vector: slices.Clone(v)}
		}
		f.upsert(ticket(id, "acme", fmt.Sprintf("p%d", i%2)), cs)
	}
	flt := retrieval.Filter{Tenant: "acme", AllProjects: true}
	want := f.ref.search(v, flt)
	for _, k := range []int{1, 4, 18, 20} {
		got := f.search(retrieval.SearchRequest{Vector: v, Filter: flt, K: k})
		if len(got) != min(k, len(want)) {
			t.Fatalf("k=%d: got %d hits, want %d", k, len(got), min(k, len(want)))
		}
		for i := range got {
			if key(got[i]) != key(want[i].Hit) {
				t.Fatalf("k=%d: tie order at %d is %s, want %s (ties break by TicketID, Ordinal ascending)",
					k, i, fmtHits(got), fmtRef(want[:len(got)]))
			}
		}
	}
	// Pages over the ties line up exactly.
	var paged []retrieval.Hit
	for off := 0; ; off += 4 {
		page := f.search(retrieval.SearchRequest{Vector: v, Filter: flt, K: 4, Offset: off})
		paged = append(paged, page...)
		if len(page) < 4 {
			break
		}
	}
	if len(paged) != len(want) {
		t.Fatalf("paging over ties yielded %d hits, want %d", len(paged), len(want))
	}
	for i := range paged {
		if key(paged[i]) != key(want[i].Hit) {
			t.Fatalf("paging over ties: position %d is %s/%d, want %s/%d", i, paged[i].TicketID, paged[i].Ordinal, want[i].TicketID, want[i].Ordinal)
		}
	}
}

func testHitFields(t *testing.T, f *fixture) {
	q := f.unitVector()
	tk := ticket("T-1", "acme", "alpha")
	tk.Title = "Printer on fire"
	f.upsert(tk, []retrieval.Chunk{
		{Ordinal: 0, Text: "first part", Vector: q},
		{Ordinal: 1, Text: "second part", Vector: f.unitVector()},
	})
	got := f.search(retrieval.SearchRequest{Vector: q, Filter: retrieval.Filter{Tenant: "acme", Projects: []string{"alpha"}}, K: 1})
	want := retrieval.Hit{TicketID: "T-1", Tenant: "acme", Project: "alpha", Title: "Printer on fire", Ordinal: 0, Text: "first part", Score: 1}
	if len(got) != 1 {
		t.Fatalf("got %d hits, want 1", len(got))
	}
	g := got[0]
	if math.Abs(float64(g.Score)-1) > ScoreTolerance {
		t.Fatalf("score of the query's own vector = %v, want 1 (cosine similarity)", g.Score)
	}
	g.Score = 1
	if g != want {
		t.Fatalf("hit = %+v, want %+v", g, want)
	}
}

func testTenantIsolation(t *testing.T, f *fixture) {
	f.populate([]string{"acme", "globex"}, 3, 40)
	q := f.unitVector()
	for _, tn := range []string{"acme", "globex"} {
		other := map[string]string{"acme": "globex", "globex": "acme"}[tn]
		flts := []retrieval.Filter{
			{Tenant: tn, AllProjects: true},
			{Tenant: tn, Projects: []string{"p0", "p1", "p2"}},
			// Tickets of the other tenant are never matched, even when named.
			{Tenant: tn, Tickets: []string{other + "-T0001", other + "-T0002"}},
			{Tenant: tn, Projects: []string{"p0"}, Tickets: []string{other + "-T0003"}},
		}
		for _, flt := range flts {
			for _, h := range f.checkSearch(q, flt, 1000, 0) {
				if h.Tenant != tn {
					t.Fatalf("filter %+v returned %s of tenant %s", flt, h.TicketID, h.Tenant)
				}
			}
			f.checkCount(flt)
		}
	}
	f.checkSearch(q, retrieval.Filter{Tenant: "initech", AllProjects: true}, 10, 0)
	f.checkCount(retrieval.Filter{Tenant: "initech", AllProjects: true})
}

func testProjectsOrTickets(t *testing.T, f *fixture) {
	f.populate([]string{"acme"}, 4, 60)
	q := f.unitVector()
	var inP1 []string
	for id, tk := range f.ref.tickets {
		if tk.Project == "p1" {
			inP1 = append(inP1, id)
		}
	}
	slices.Sort(inP1)
	flts := []retrieval.Filter{
		{Tenant: "acme", Projects: []string{"p0"}},
		{Tenant: "acme", Tickets: inP1[:3]},
		{Tenant: "acme", Projects: []string{"p0"}, Tickets: inP1[:3]},
		// A ticket named directly and through its project is counted once.
		{Tenant: "acme", Projects: []string{"p1"}, Tickets: inP1[:2]},
		{Tenant: "acme", Tickets: []string{"no-such-ticket"}},
		{Tenant: "acme", Projects: []string{"no-such-project", "p3"}},
	}
	for _, flt := range flts {
		f.checkSearch(q, flt, 1000, 0)
		f.checkSearch(q, flt, 5, 0)
		f.checkCount(flt)
	}
}

func testAllProjects(t *testing.T, f *fixture) {
	f.populate([]string{"acme", "globex"}, 5, 50)
	q := f.unitVector()
	flt := retrieval.Filter{Tenant: "globex", AllProjects: true}
	f.checkSearch(q, flt, 1000, 0)
	f.checkSearch(q, flt, 10, 0)
	f.checkCount(flt)
	// AllProjects ignores the project list.
	flt.Projects = []string{"p0"}
	f.checkSearch(q, flt, 1000, 0)
	f.checkCount(flt)
}

func testEmptyFilter(t *testing.T, f *fixture) {
	f.populate([]string{"acme"}, 2, 20)
	q := f.unitVector()
	for _, flt := range []retrieval.Filter{
		{Tenant: "acme"},
		{Tenant: "acme", Projects: []string{}, Tickets: []string{}},
		{AllProjects: true},
		{Projects: []string{"p0", "p1"}},
		{Tickets: []string{"acme-T0001"}},
		{},
	} {
		hits := f.search(retrieval.SearchRequest{Vector: q, Filter: flt, K: 10})
		if len(hits) != 0 {
			t.Fatalf("filter %+v matched %d hits, want none", flt, len(hits))
		}
		n, err := f.s.Count(f.ctx, flt)
		if err != nil {
			t.Fatalf("Count(%+v): %v", flt, err)
		}
		if n != 0 {
			t.Fatalf("Count(%+v) = %d, want 0", flt, n)
		}
	}
}

func testHugeFilter(t *testing.T, f *fixture) {
	f.populate([]string{"acme"}, 30, 120)
	q := f.unitVector()
	ps := make([]string, 0, 10_000)
	for i := range 10_000 - 15 {
		ps = append(ps, fmt.Sprintf("unknown-project-%05d", i))
	}
	for i := range 15 {
		ps = append(ps, fmt.Sprintf("p%d", 2*i))
	}
	f.rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	ids := make([]string, 0, 10_000)
	for i := range 10_000 {
		ids = append(ids, fmt.Sprintf("unknown-ticket-%05d", i))
	}
	ids[5000] = "acme-T0007"
	ids[9999] = "acme-T0011"
	for _, flt := range []retrieval.Filter{
		{Tenant: "acme", Projects: ps},
		{Tenant: "acme", Tickets: ids},
		{Tenant: "acme", Projects: ps, Tickets: ids},
	} {
		f.checkSearch(q, flt, 20, 0)
		f.checkCount(flt)
	}
}

func testCount(t *testing.T, f *fixture) {
	f.populate([]string{"acme", "globex"}, 6, 80)
	for range 20 {
		flt := retrieval.Filter{Tenant: []string{"acme", "globex", "other"}[f.rng.IntN(3)]}
		for range f.rng.IntN(4) {
			flt.Projects = append(flt.Projects, fmt.Sprintf("p%d", f.rng.IntN(7)))
		}
		for range f.rng.IntN(4) {
			flt.Tickets = append(flt.Tickets, fmt.Sprintf("%s-T%04d", flt.Tenant, f.rng.IntN(90)))
		}
		flt.AllProjects = f.rng.IntN(5) == 0
		f.checkCount(flt)
	}
}

func testUpsertReplaces(t *testing.T, f *fixture) {
	f.populate([]string{"acme"}, 2, 10)
	f.upsert(ticket("X", "acme", "p0"), f.chunks("X", 6))
	f.checkAll()
	// Shrink: the old ordinals 2..5 must vanish.
	tk := ticket("X", "acme", "p0")
	tk.Title = "new title"
	cs := f.chunks("X", 2)
	for i := range cs {
		cs[i].Text = fmt.Sprintf("new text %d", i)
	}
	f.upsert(tk, cs)
	f.checkAll()
	hits := f.search(retrieval.SearchRequest{Vector: cs[1].Vector, Filter: retrieval.Filter{Tenant: "acme", Tickets: []string{"X"}}, K: 100})
	if len(hits) != 2 {
		t.Fatalf("after shrinking to 2 chunks, ticket X has %d hits", len(hits))
	}
	for _, h := range hits {
		if !strings.HasPrefix(h.Text, "new text") || h.Title != "new title" {
			t.Fatalf("stale chunk after upsert: %+v", h)
		}
	}
	// Grow again.
	f.upsert(ticket("X", "acme", "p0"), f.chunks("X", 9))
	f.checkAll()
}

func testReupsertElsewhere(t *testing.T, f *fixture) {
	f.populate([]string{"acme", "globex"}, 3, 20)
	f.upsert(ticket("X", "acme", "p0"), f.chunks("X", 3))
	f.checkAll()
	f.upsert(ticket("X", "acme", "p2"), f.chunks("X", 2)) // other project
	f.checkAll()
	f.upsert(ticket("X", "globex", "p2"), f.chunks("X", 4)) // other tenant
	f.checkAll()
	for _, flt := range []retrieval.Filter{
		{Tenant: "acme", Tickets: []string{"X"}},
		{Tenant: "acme", AllProjects: true},
	} {
		for _, h := range f.search(retrieval.SearchRequest{Vector: f.unitVector(), Filter: flt, K: 1000}) {
			if h.TicketID == "X" {
				t.Fatalf("ticket X moved to globex still matches %+v", flt)
			}
		}
	}
}

func testDelete(t *testing.T, f *fixture) {
	f.populate([]string{"acme"}, 3, 30)
	for _, id := range []string{"acme-T0000", "acme-T0015", "acme-T0029"} {
		f.delete(id)
		if _, err := f.s.Get(f.ctx, id); !errors.Is(err, retrieval.ErrNotFound) {
			t.Fatalf("Get(%s) after delete: %v, want ErrNotFound", id, err)
		}
		n, err := f.s.Count(f.ctx, retrieval.Filter{Tenant: "acme", Tickets: []string{id}})
		if err != nil || n != 0 {
			t.Fatalf("Count of deleted ticket %s = %d, %v", id, n, err)
		}
	}
	f.checkAll()
	f.delete("never-existed") // not an error
	f.delete("acme-T0015")    // twice: not an error
	f.checkAll()
	// Delete everything, then the store answers empty.
	for _, id := range slices.Collect(maps.Keys(f.ref.tickets)) {
		f.delete(id)
	}
	f.checkAll()
	f.checkSearch(f.unitVector(), retrieval.Filter{Tenant: "acme", AllProjects: true}, 10, 0)
}

func testMove(t *testing.T, f *fixture) {
	f.populate([]string{"acme"}, 3, 30)
	id := "acme-T0004"
	from := f.ref.tickets[id].Project
	to := "moved-here"
	f.move(id, to)
	f.checkAll()
	got, err := f.s.Get(f.ctx, id)
	if err != nil || got.Project != to {
		t.Fatalf("Get after Move = %+v, %v; want project %s", got, err, to)
	}
	for _, h := range f.search(retrieval.SearchRequest{Vector: f.unitVector(), Filter: retrieval.Filter{Tenant: "acme", Projects: []string{from}}, K: 1000}) {
		if h.TicketID == id {
			t.Fatalf("moved ticket %s still matches its old project %s", id, from)
		}
	}
	hits := f.search(retrieval.SearchRequest{Vector: f.unitVector(), Filter: retrieval.Filter{Tenant: "acme", Projects: []string{to}}, K: 1000})
	if len(hits) != len(f.ref.chunks[id]) {
		t.Fatalf("new project %s has %d hits, want %d", to, len(hits), len(f.ref.chunks[id]))
	}
	for _, h := range hits {
		if h.Project != to {
			t.Fatalf("hit of moved ticket reports project %q, want %q", h.Project, to)
		}
	}
	f.move(id, from) // and back
	f.move(id, from) // to where it already is
	f.checkAll()
	if err := f.s.Move(f.ctx, "missing", "p1"); !errors.Is(err, retrieval.ErrNotFound) {
		t.Fatalf("Move(missing) = %v, want ErrNotFound", err)
	}
	if _, err := f.s.Get(f.ctx, "missing"); !errors.Is(err, retrieval.ErrNotFound) {
		t.Fatalf("Move(missing) created a ticket")
	}
}

func testGet(t *testing.T, f *fixture) {
	tk := ticket("T-9", "acme", "alpha")
	tk.Body = "multi\nline body with ünïcode"
	tk.UpdatedAt = time.Date(2025, 12, 31, 23, 59, 58, 0, time.UTC)
	f.upsert(tk, f.chunks("T-9", 2))
	got, err := f.s.Get(f.ctx, "T-9")
	if err != nil {
		t.Fatal(err)
	}
	checkTicket(t, got, tk)
	_, err = f.s.Get(f.ctx, "T-10")
	if !errors.Is(err, retrieval.ErrNotFound) || !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want retrieval.ErrNotFound", err)
	}
}

func testTicketsAndStats(t *testing.T, f *fixture) {
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tickets != 0 || st.Chunks != 0 || st.Dim != f.dim || st.Model != Meta.Model || st.Backend == "" {
		t.Fatalf("Stats of empty store = %+v", st)
	}
	f.checkTickets()
	f.populate([]string{"acme", "globex"}, 3, 25)
	f.delete("acme-T0003")
	f.checkTickets()
	st, err = f.s.Stats(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	for _, cs := range f.ref.chunks {
		chunks += len(cs)
	}
	if st.Tickets != len(f.ref.tickets) || st.Chunks != chunks || st.Dim != f.dim || st.Model != Meta.Model {
		t.Fatalf("Stats = %+v, want %d tickets, %d chunks, dim %d, model %s", st, len(f.ref.tickets), chunks, f.dim, Meta.Model)
	}
	// Breaking out of the iteration early is allowed.
	for range f.s.Tickets(f.ctx) {
		break
	}
}

func testPaging(t *testing.T, f *fixture) {
	f.populate([]string{"acme"}, 4, 60)
	q := f.unitVector()
	for _, flt := range []retrieval.Filter{
		{Tenant: "acme", AllProjects: true},
		{Tenant: "acme", Projects: []string{"p1", "p3"}, Tickets: []string{"acme-T0002"}},
	} {
		all := f.ref.search(q, flt)
		for _, k := range []int{1, 7, 50} {
			var paged []retrieval.Hit
			for off := 0; ; off += k {
				page := f.checkSearch(q, flt, k, off)
				paged = append(paged, page...)
				if len(page) < k {
					break
				}
				if off > len(all)+k {
					t.Fatalf("paging does not end")
				}
			}
			seen := map[[2]string]bool{}
			for _, h := range paged {
				if seen[key(h)] {
					t.Fatalf("k=%d: %s/%d on two pages", k, h.TicketID, h.Ordinal)
				}
				seen[key(h)] = true
			}
			if len(paged) != len(all) {
				t.Fatalf("k=%d: pages hold %d hits, filter matches %d", k, len(paged), len(all))
			}
		}
		// Offset past the end is empty, not an error.
		if hits := f.search(retrieval.SearchRequest{Vector: q, Filter: flt, K: 5, Offset: len(all) + 3}); len(hits) != 0 {
			t.Fatalf("offset past the end returned %d hits", len(hits))
		}
	}
}

func testInvalid(t *testing.T, f *fixture) {
	f.upsert(ticket("T-1", "acme", "p0"), f.chunks("T-1", 2))
	short := f.chunks("T-1", 3)
	short[2].Vector = short[2].Vector[:f.dim-1]
	long := f.chunks("T-1", 1)
	long[0].Vector = append(long[0].Vector, 0)
	bad := []struct {
		name string
		tk   retrieval.Ticket
		cs   []retrieval.Chunk
	}{
		{"short vector", ticket("T-1", "acme", "p1"), short},
		{"long vector", ticket("T-1", "acme", "p1"), long},
		{"short vector, new ticket", ticket("T-2", "acme", "p1"), short},
		{"empty id", ticket("", "acme", "p1"), f.chunks("", 1)},
		{"empty tenant", ticket("T-2", "", "p1"), f.chunks("T-2", 1)},
	}
	for _, b := range bad {
		err := f.s.Upsert(f.ctx, b.tk, b.cs)
		if !errors.Is(err, clearance.ErrInvalid) {
			t.Fatalf("Upsert with %s = %v, want an error wrapping clearance.ErrInvalid", b.name, err)
		}
	}
	f.checkAll() // nothing written: T-1 unchanged, T-2 absent
	q := f.unitVector()
	_, err := f.s.Search(f.ctx, retrieval.SearchRequest{Vector: q[:f.dim-2], Filter: retrieval.Filter{Tenant: "acme", AllProjects: true}, K: 3})
	if !errors.Is(err, clearance.ErrInvalid) {
		t.Fatalf("Search with a vector of dim %d = %v, want an error wrapping clearance.ErrInvalid", f.dim-2, err)
	}
}

// testConcurrent has writers replace a ticket again and again: generation g has
// 1+g%4 chunks, all with text "gen=g ...", in project "even" or "odd" by g. Readers
// must always see exactly one generation, completely, in the right project.
func testConcurrent(t *testing.T, f *fixture) {
	f.populate([]string{"acme"}, 3, 20)
	const gens = 120
	q := f.unitVector()
	gen := func(g int) (retrieval.Ticket, []retrieval.Chunk) {
		tk := ticket("hot", "acme", []string{"even", "odd"}[g%2])
		cs := make([]retrieval.Chunk, 1+g%4)
		for i := range cs {
			cs[i] = retrieval.Chunk{Ordinal: i, Text: fmt.Sprintf("gen=%d part=%d", g, i), Vector: q}
		}
		return tk, cs
	}
	tk, cs := gen(0)
	f.upsert(tk, cs)

	ctx := f.ctx
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	done := make(chan struct{})
	wg.Go(func() { // writer of the hot ticket
		defer close(done)
		for g := 1; g < gens; g++ {
			tk, cs := gen(g)
			if err := f.s.Upsert(ctx, tk, cs); err != nil {
				errc <- fmt.Errorf("upsert gen %d: %w", g, err)
				return
			}
		}
	})
	other := make([][]retrieval.Chunk, 30)
	for i := range other {
		other[i] = f.chunks("cold", 1+i%3)
	}
	churned := map[string][]retrieval.Chunk{} // last state per cold ticket; nil = deleted
	wg.Go(func() {                            // a second writer churning other tickets
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			id := fmt.Sprintf("cold-%d", i%5)
			var err error
			if i%7 == 6 {
				err = f.s.Delete(ctx, id)
				churned[id] = nil
			} else {
				err = f.s.Upsert(ctx, ticket(id, "acme", "even"), other[i%len(other)])
				churned[id] = other[i%len(other)]
			}
			if err != nil {
				errc <- err
				return
			}
		}
	})
	check := func(hits []retrieval.Hit, project string) error {
		g := -1
		n := 0
		for _, h := range hits {
			if h.TicketID != "hot" {
				continue
			}
			var hg, part int
			if _, err := fmt.Sscanf(h.Text, "gen=%d part=%d", &hg, &part); err != nil {
				return fmt.Errorf("unexpected text %q", h.Text)
			}
			if g != -1 && hg != g {
				return fmt.Errorf("one result set mixes generations %d and %d", g, hg)
			}
			g = hg
			n++
			if h.Project != []string{"even", "odd"}[g%2] || (project != "" && h.Project != project) {
				return fmt.Errorf("gen %d reported in project %q (filter %q)", g, h.Project, project)
			}
		}
		if g != -1 && n != 1+g%4 {
			return fmt.Errorf("gen %d: saw %d of its %d chunks", g, n, 1+g%4)
		}
		return nil
	}
	for r := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				var flt retrieval.Filter
				project := ""
				switch (i + r) % 3 {
				case 0:
					flt = retrieval.Filter{Tenant: "acme", Tickets: []string{"hot"}}
				case 1:
					project = []string{"even", "odd"}[i%2]
					flt = retrieval.Filter{Tenant: "acme", Projects: []string{project}}
				default:
					flt = retrieval.Filter{Tenant: "acme", AllProjects: true}
				}
				res, err := f.s.Search(ctx, retrieval.SearchRequest{Vector: q, Filter: flt, K: 50})
				hits := res.Hits
				if err == nil {
					err = check(hits, project)
				}
				if err != nil {
					errc <- err
					return
				}
				if flt.Tickets != nil && len(hits) == 0 {
					errc <- errors.New("hot ticket invisible between upserts")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	tk, cs = gen(gens - 1)
	f.ref.tickets["hot"], f.ref.chunks["hot"] = tk, cs
	for id, cs := range churned {
		if cs != nil {
			f.ref.tickets[id], f.ref.chunks[id] = ticket(id, "acme", "even"), cs
		}
	}
	f.checkAll()
	f.checkSearch(q, retrieval.Filter{Tenant: "acme", Tickets: []string{"hot"}}, 10, 0)
}

func testReopen(t *testing.T, open Opener, reopen func(*testing.T, retrieval.Store, retrieval.IndexMeta) (retrieval.Store, error)) {
	f := newFixture(t, open, Meta)
	f.populate([]string{"acme", "globex"}, 4, 40)
	f.upsert(ticket("acme-T0001", "acme", "p1"), f.chunks("acme-T0001", 2)) // replaced
	f.delete("acme-T0002")
	f.move("acme-T0003", "elsewhere")
	f.close()

	s2, err := reopen(t, f.s, Meta)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	f.s = s2
	var once sync.Once
	f.close = func() {
		once.Do(func() {
			if err := s2.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(f.close)
	f.checkAll()
	// Still writable after reopen, and those writes survive another reopen.
	f.upsert(ticket("after-reopen", "acme", "p0"), f.chunks("after-reopen", 3))
	f.delete("acme-T0004")
	f.close()
	s3, err := reopen(t, s2, Meta)
	if err != nil {
		t.Fatalf("second reopen: %v", err)
	}
	t.Cleanup(func() { s3.Close() })
	f.s = s3
	f.checkAll()
}

func testMismatch(t *testing.T, open Opener, reopen func(*testing.T, retrieval.Store, retrieval.IndexMeta) (retrieval.Store, error)) {
	f := newFixture(t, open, Meta)
	f.populate([]string{"acme"}, 2, 10)
	f.close()
	for _, m := range []retrieval.IndexMeta{
		{Model: "another-model", Dim: Meta.Dim},
		{Model: Meta.Model, Dim: Meta.Dim * 2},
	} {
		s, err := reopen(t, f.s, m)
		if err == nil {
			s.Close()
			t.Fatalf("reopen with %+v succeeded, want ErrIndexMismatch", m)
		}
		if !errors.Is(err, retrieval.ErrIndexMismatch) {
			t.Fatalf("reopen with %+v = %v, want ErrIndexMismatch", m, err)
		}
	}
	// The refused opens left the index intact.
	s, err := reopen(t, f.s, Meta)
	if err != nil {
		t.Fatalf("reopen with the right meta after refused opens: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	f.s = s
	f.checkAll()
}
