package qdrant

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/qdrant/go-client/qdrant"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// These run without a server: the pure parts of the adapter.

func TestPointIDsAreStableDistinctUUIDs(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]string{}
	for _, tc := range []struct {
		name string
		id   string
	}{
		{"T-1/0", chunkID("T-1", 0).GetUuid()},
		{"T-1/1", chunkID("T-1", 1).GetUuid()},
		{"T-11/0", chunkID("T-11", 0).GetUuid()},
		{"T-1 ticket", ticketID("T-1").GetUuid()},
		{"meta", metaID().GetUuid()},
	} {
		if !uuid.MatchString(tc.id) {
			t.Fatalf("%s: %q is not a version-5 UUID", tc.name, tc.id)
		}
		if other, dup := seen[tc.id]; dup {
			t.Fatalf("%s and %s share id %s", tc.name, other, tc.id)
		}
		seen[tc.id] = tc.name
	}
	again := chunkID("T-1", 0)
	if again.GetUuid() != seenID(seen, "T-1/0") {
		t.Fatal("point ids are not deterministic")
	}
}

func seenID(seen map[string]string, name string) string {
	for id, n := range seen {
		if n == name {
			return id
		}
	}
	return ""
}

func TestFilterTranslation(t *testing.T) {
	f := filter(retrieval.Filter{Tenant: "acme", Projects: []string{"p1", "p2"}, Tickets: []string{"T-9"}})
	if len(f.Must) != 1 || f.Must[0].GetField().GetKey() != keyTenant || f.Must[0].GetField().GetMatch().GetKeyword() != "acme" {
		t.Fatalf("must = %v, want tenant = acme", f.Must)
	}
	if len(f.Should) != 2 ||
		f.Should[0].GetField().GetKey() != keyProject || len(f.Should[0].GetField().GetMatch().GetKeywords().GetStrings()) != 2 ||
		f.Should[1].GetField().GetKey() != keyTicket || f.Should[1].GetField().GetMatch().GetKeywords().GetStrings()[0] != "T-9" {
		t.Fatalf("should = %v, want project in [p1 p2], ticket in [T-9]", f.Should)
	}
	all := filter(retrieval.Filter{Tenant: "acme", AllProjects: true, Projects: []string{"p1"}})
	if len(all.Must) != 1 || len(all.Should) != 0 {
		t.Fatalf("AllProjects filter = %v, want tenant only", all)
	}
	only := filter(retrieval.Filter{Tenant: "acme", Tickets: []string{"T-1"}})
	if len(only.Should) != 1 || only.Should[0].GetField().GetKey() != keyTicket {
		t.Fatalf("tickets-only filter = %v: an empty project list must not be sent", only)
	}
}

func TestClientConfig(t *testing.T) {
	for _, tc := range []struct {
		url  string
		host string
		port int
		tls  bool
	}{
		{"localhost:6334", "localhost", 6334, false},
		{"qdrant.internal", "qdrant.internal", 6334, false},
		{"http://10.0.0.5:7000", "10.0.0.5", 7000, false},
		{"https://xyz.cloud.qdrant.io:6334", "xyz.cloud.qdrant.io", 6334, true},
	} {
		c, err := clientConfig(Config{URL: tc.url})
		if err != nil || c.Host != tc.host || c.Port != tc.port || c.UseTLS != tc.tls {
			t.Fatalf("%s: %+v, %v", tc.url, c, err)
		}
	}
	for _, bad := range []string{"", "ftp://x:1", "host:notaport", ":6334"} {
		if _, err := clientConfig(Config{URL: bad}); !errors.Is(err, clearance.ErrInvalid) {
			t.Fatalf("%q: err = %v, want ErrInvalid", bad, err)
		}
	}
}

// collideA and collideB are two terms with the same FNV-1a id.
const collideA, collideB = "w673879", "w1180600"

func TestTermIDs(t *testing.T) {
	if termID(collideA) != termID(collideB) {
		t.Fatalf("termID(%q) = %d, termID(%q) = %d: the test pair must collide", collideA, termID(collideA), collideB, termID(collideB))
	}
	// Ids are stored in the collection: changing the hash would orphan every
	// indexed chunk, so pin it (FNV-1a 32).
	for term, want := range map[string]uint32{"": 2166136261, "a": 0xe40c292c, "err_conn_reset": termID("err_conn_reset")} {
		if got := termID(term); got != want {
			t.Fatalf("termID(%q) = %#x, want %#x", term, got, want)
		}
	}
	if termID("login") == termID("logout") {
		t.Fatal("distinct common terms share an id")
	}
}

// sparseTF is what a sparse query {termID(term): 1} scores the chunk with,
// after posting's lex_coll override.
func sparseTF(d lexDoc, term string) float32 {
	if tf, ok := d.coll[term]; ok {
		return tf
	}
	i, ok := slices.BinarySearch(d.indices, termID(term))
	if !ok {
		return 0
	}
	return d.values[i]
}

func TestAnalyzeChunk(t *testing.T) {
	texts := []string{
		"", "login timeout after ERR_CONN_RESET", "regression since 1.22.1 on db01.prod db01.prod",
		"Straße STRASSE fooBarService SQLSTATE 40001", strings.Repeat("cache miss ", 50),
	}
	for _, text := range texts {
		want := lexical.Analyze("SEC-12", "Login fails", text)
		d := analyzeChunk("SEC-12", "Login fails", text)
		if float32(d.length) != want.Len {
			t.Fatalf("%q: length %d, want %v (lengths must be integers)", text, d.length, want.Len)
		}
		if !slices.IsSorted(d.indices) || len(slices.Compact(slices.Clone(d.indices))) != len(d.indices) || len(d.values) != len(d.indices) {
			t.Fatalf("%q: indices %v are not sorted and distinct", text, d.indices)
		}
		if len(d.terms) != len(want.Terms) || d.coll != nil {
			t.Fatalf("%q: %d terms (coll %v), want %d", text, len(d.terms), d.coll, len(want.Terms))
		}
		for i, term := range want.Terms {
			if d.terms[i] != term.Term || sparseTF(d, term.Term) != term.TF {
				t.Fatalf("%q: term %q: payload %q, sparse tf %v, want tf %v", text, term.Term, d.terms[i], sparseTF(d, term.Term), term.TF)
			}
		}
		p := map[string]any{}
		d.payload(p)
		if p[keyLexLen] != d.length || len(p[keyLexTerms].([]any)) != len(d.terms) || p[keyLexColl] != nil {
			t.Fatalf("%q: payload %v", text, p)
		}
	}
}

func TestAnalyzeChunkCollision(t *testing.T) {
	d := analyzeChunk("T-1", "", collideA+" "+collideB+" "+collideB)
	if tf := sparseTF(d, collideA); tf != 1 {
		t.Fatalf("tf(%s) = %v, want 1", collideA, tf)
	}
	if tf := sparseTF(d, collideB); tf != 2 {
		t.Fatalf("tf(%s) = %v, want 2", collideB, tf)
	}
	if len(d.coll) != 2 {
		t.Fatalf("lex_coll = %v, want both colliding terms", d.coll)
	}
	if len(slices.Compact(slices.Clone(d.indices))) != len(d.indices) {
		t.Fatalf("duplicate sparse index: %v", d.indices)
	}
	p := map[string]any{}
	d.payload(p)
	if coll, _ := p[keyLexColl].(map[string]any); coll[collideA] != 1.0 || coll[collideB] != 2.0 {
		t.Fatalf("payload lex_coll = %v", p[keyLexColl])
	}
	if _, err := qdrant.TryValueMap(p); err != nil {
		t.Fatalf("payload is not a Qdrant value: %v", err)
	}
}

// Lengths are integers for any text (Facet sums them as integers).
func FuzzLexicalLengthIsInteger(f *testing.F) {
	f.Add("SEC-12", "Login", "ERR_CONN_RESET 1.22.1 fooBar ǅemo")
	f.Fuzz(func(t *testing.T, id, title, text string) {
		d := lexical.Analyze(id, title, text)
		if d.Len != float32(int64(d.Len)) || analyzeChunk(id, title, text).length != int64(d.Len) {
			t.Fatalf("length %v is not an integer", d.Len)
		}
	})
}

func TestTermFilter(t *testing.T) {
	f := termFilter(retrieval.Filter{Tenant: "acme", Projects: []string{"p1"}, Tickets: []string{"T-9"}}, "zebrafish")
	if len(f.Must) != 2 || f.Must[0].GetField().GetKey() != keyTenant || f.Must[0].GetField().GetMatch().GetKeyword() != "acme" ||
		f.Must[1].GetField().GetKey() != keyLexTerms || f.Must[1].GetField().GetMatch().GetKeyword() != "zebrafish" {
		t.Fatalf("must = %v, want tenant = acme and lex_terms = zebrafish", f.Must)
	}
	if len(f.Should) != 2 || f.Should[0].GetField().GetKey() != keyProject || f.Should[1].GetField().GetKey() != keyTicket {
		t.Fatalf("should = %v: the term must narrow the store filter, not replace it", f.Should)
	}
	// Each call builds its own filter: narrowing one term's must not narrow
	// the statistics' filter.
	if base := filter(retrieval.Filter{Tenant: "acme", Projects: []string{"p1"}}); len(base.Must) != 1 {
		t.Fatalf("filter shares conditions with termFilter: %v", base.Must)
	}
}

func TestFacetTotals(t *testing.T) {
	hit := func(v int64, n uint64) *qdrant.FacetHit {
		return &qdrant.FacetHit{Value: &qdrant.FacetValue{Variant: &qdrant.FacetValue_IntegerValue{IntegerValue: v}}, Count: n}
	}
	n, sum, complete := facetTotals([]*qdrant.FacetHit{hit(12, 3), hit(40, 1), hit(7, 2)}, 10)
	if n != 6 || sum != 12*3+40+7*2 || !complete {
		t.Fatalf("n %d sum %v complete %v", n, sum, complete)
	}
	if _, _, complete := facetTotals([]*qdrant.FacetHit{hit(1, 1), hit(2, 1)}, 2); complete {
		t.Fatal("a facet answer as long as its limit may have left lengths out")
	}
}

func TestPlanPostings(t *testing.T) {
	for _, tc := range []struct {
		df, want []int
		budget   int
		capped   bool
	}{
		{[]int{3, 0, 10}, []int{3, 0, 10}, 100, false},
		{[]int{3, 0, 10}, []int{3, 0, 10}, 13, false},
		// The rarest terms are read whole; the common one gets what is left.
		{[]int{150000, 2, 40}, []int{58, 2, 40}, 100, true},
		{[]int{90, 90}, []int{90, 10}, 100, true},
		{[]int{500, 200, 300}, []int{0, 200, 300}, 500, true},
	} {
		got, capped := planPostings(tc.df, tc.budget)
		if !slices.Equal(got, tc.want) || capped != tc.capped {
			t.Fatalf("planPostings(%v, %d) = %v, %v; want %v, %v", tc.df, tc.budget, got, capped, tc.want, tc.capped)
		}
	}
}

func TestPostingFromScoredPoint(t *testing.T) {
	pt := func(payload map[string]any, score float32) *qdrant.ScoredPoint {
		return &qdrant.ScoredPoint{Id: chunkID("T-1", 2), Score: score, Payload: qdrant.NewValueMap(payload)}
	}
	p, ok := posting(pt(map[string]any{keyTicket: "T-1", keyOrdinal: int64(2), keyLexLen: int64(17)}, 3), "x")
	if !ok || p.ticket != "T-1" || p.ordinal != 2 || p.dl != 17 || p.tf != 3 || p.point != chunkID("T-1", 2).GetUuid() {
		t.Fatalf("posting = %+v, %v", p, ok)
	}
	// A colliding term's frequency comes from lex_coll, not the shared value.
	p, ok = posting(pt(map[string]any{keyTicket: "T-1", keyOrdinal: int64(2), keyLexLen: int64(17),
		keyLexColl: map[string]any{collideA: 1.0, collideB: int64(2)}}, 3), collideB)
	if !ok || p.tf != 2 {
		t.Fatalf("collided posting = %+v, %v; want tf 2", p, ok)
	}
	// A chunk written without the lexical fields cannot be scored.
	if _, ok := posting(pt(map[string]any{keyTicket: "T-1", keyOrdinal: int64(2)}, 3), "x"); ok {
		t.Fatal("a point without lex_len was taken as a posting")
	}
}

// lexCorpusDoc is one chunk of the in-memory corpus below.
type lexCorpusDoc struct {
	tenant, project, ticket, title, text string
	ordinal                              int
}

func lexCorpus() []lexCorpusDoc {
	rng := rand.New(rand.NewPCG(20, 7))
	words := strings.Fields("login timeout error database replica lag payment refund cache token " + collideA + " " + collideB)
	var docs []lexCorpusDoc
	for i := range 300 {
		tenant := []string{"acme", "globex"}[rng.IntN(2)]
		ws := make([]string, 2+rng.IntN(20))
		for j := range ws {
			ws[j] = words[rng.IntN(len(words))]
		}
		docs = append(docs, lexCorpusDoc{tenant: tenant, project: fmt.Sprintf("p%d", rng.IntN(4)),
			ticket: fmt.Sprintf("%s-T%03d", tenant, i/2), ordinal: i % 2, title: words[rng.IntN(len(words))], text: strings.Join(ws, " ")})
	}
	return docs
}

func lexAllowed(d lexCorpusDoc) bool {
	return d.tenant == "acme" && (d.project == "p1" || d.project == "p2")
}

// serverAnswers is what the server's exact requests answer for terms under
// the filter lexAllowed: the statistics (Count, Facet of lengths, per-term
// Count) and each term's whole postings, highest frequency first (a sparse
// query), read through analyzeChunk's vectors and lex_coll.
func serverAnswers(t *testing.T, docs []lexCorpusDoc, terms []string) (lexStats, [][]lexPosting) {
	t.Helper()
	lengths := map[int64]uint64{}
	st := lexStats{df: make([]int, len(terms))}
	lists := make([][]lexPosting, len(terms))
	total := 0
	for _, d := range docs {
		if !lexAllowed(d) {
			continue
		}
		total++
		ld := analyzeChunk(d.ticket, d.title, d.text)
		lengths[ld.length]++
		for i, term := range terms {
			if !slices.Contains(ld.terms, term) { // the lex_terms condition
				continue
			}
			st.df[i]++
			lists[i] = append(lists[i], lexPosting{point: chunkID(d.ticket, d.ordinal).GetUuid(), ticket: d.ticket,
				ordinal: d.ordinal, dl: float32(ld.length), tf: sparseTF(ld, term)})
		}
	}
	for _, l := range lists {
		slices.SortFunc(l, func(a, b lexPosting) int { return cmp.Or(cmp.Compare(b.tf, a.tf), strings.Compare(a.point, b.point)) })
	}
	var hits []*qdrant.FacetHit
	for v, n := range lengths {
		hits = append(hits, &qdrant.FacetHit{Value: &qdrant.FacetValue{Variant: &qdrant.FacetValue_IntegerValue{IntegerValue: v}}, Count: n})
	}
	var ok bool
	st.n, st.sumDL, ok = facetTotals(hits, facetLimit)
	if !ok || st.n != total {
		t.Fatalf("facet totals %d of %d chunks", st.n, total)
	}
	return st, lists
}

type lexRef struct {
	ticket  string
	ordinal int
	score   float64
	terms   []string
}

// lexReference is BM25F computed directly from lexical.Analyze over the
// allowed chunks, ranked like every store ranks.
func lexReference(docs []lexCorpusDoc, terms []string) []lexRef {
	var want []lexRef
	var n int
	var sum float64
	df := make([]int, len(terms))
	for _, d := range docs {
		if lexAllowed(d) {
			a := lexical.Analyze(d.ticket, d.title, d.text)
			n++
			sum += float64(a.Len)
			for i, term := range terms {
				if a.TF(term) > 0 {
					df[i]++
				}
			}
		}
	}
	for _, d := range docs {
		if !lexAllowed(d) {
			continue
		}
		a := lexical.Analyze(d.ticket, d.title, d.text)
		r := lexRef{ticket: d.ticket, ordinal: d.ordinal}
		for i, term := range terms {
			if tf := a.TF(term); tf > 0 {
				r.terms = append(r.terms, term)
				r.score += lexical.TermScore(lexical.IDF(n, df[i]), tf, a.Len, sum/float64(n))
			}
		}
		if r.terms != nil {
			want = append(want, r)
		}
	}
	slices.SortFunc(want, func(a, b lexRef) int {
		return cmp.Or(cmp.Compare(b.score, a.score), strings.Compare(a.ticket, b.ticket), cmp.Compare(a.ordinal, b.ordinal))
	})
	return want
}

// TestRankLexicalMatchesReference feeds rankLexical the statistics and
// postings the server's exact answers would hold for a filter and compares
// its ranking with BM25F computed directly: same order, same bits.
func TestRankLexicalMatchesReference(t *testing.T) {
	docs := lexCorpus()
	for _, query := range []string{"login timeout", collideA, collideB + " cache", "acme-T010", "nothing"} {
		terms := lexical.QueryTerms(lexical.Terms(query))
		st, lists := serverAnswers(t, docs, terms)
		limits, capped := planPostings(st.df, DefaultLexicalMaxPostings)
		if capped || !complete(lists, limits) {
			t.Fatalf("%q: capped %v, postings %v of %v", query, capped, lists, limits)
		}
		got, want := rankLexical(st, lists), lexReference(docs, terms)
		if len(got) != len(want) {
			t.Fatalf("%q: %d hits, want %d", query, len(got), len(want))
		}
		for i := range want {
			if got[i].ticket != want[i].ticket || got[i].ordinal != want[i].ordinal || got[i].score != want[i].score {
				t.Fatalf("%q: rank %d = %s/%d %v, want %s/%d %v", query, i, got[i].ticket, got[i].ordinal, got[i].score,
					want[i].ticket, want[i].ordinal, want[i].score)
			}
		}
		if query != "nothing" && len(want) == 0 {
			t.Fatalf("%q: the corpus has no match: the test checks nothing", query)
		}
	}
}

// TestCappedPageIsExact: with a budget below the postings, the terms are read
// as planned (rare whole, common best-first) and the capped terms'
// frequencies looked up where a candidate could still reach the page. The
// page is then exactly the best of all candidates, scores to the bit; the
// lookups are fewer than all candidates' (the bound prunes); and a chunk of
// the exact ranking is missing only if it holds capped terms alone.
func TestCappedPageIsExact(t *testing.T) {
	docs := lexCorpus()
	pruned := 0
	for _, query := range []string{"login timeout " + collideA, "login acme-T010", "cache token error"} {
		terms := lexical.QueryTerms(lexical.Terms(query))
		st, full := serverAnswers(t, docs, terms)
		exact := map[string]lexRef{}
		for _, r := range lexReference(docs, terms) {
			exact[chunkID(r.ticket, r.ordinal).GetUuid()] = r
		}
		for _, budget := range []int{1, 5, 20, 40, 60} {
			for _, need := range []int{1, 3, 10} {
				limits, capped := planPostings(st.df, budget)
				if !capped {
					t.Fatalf("%q budget %d: not capped (df %v)", query, budget, st.df)
				}
				lists := make([][]lexPosting, len(terms))
				cands := map[string]bool{}
				for i := range full {
					lists[i] = slices.Clone(full[i][:limits[i]])
					for _, p := range lists[i] {
						cands[p.point] = true
					}
				}
				lookups := cappedLookups(st, lists, limits, need, 1<<30)
				all := 0
				for i, points := range lookups {
					if limits[i] == st.df[i] {
						t.Fatalf("lookups for term %q, which was read whole", terms[i])
					}
					all += len(points)
					for _, p := range full[i] { // the HasId query
						if slices.Contains(points, p.point) {
							lists[i] = append(lists[i], p)
						}
					}
				}
				if all < len(cands) {
					pruned++
				}
				got := rankLexical(st, lists)
				// The best of all candidates by their exact scores.
				var ideal []lexRef
				for p := range cands {
					ideal = append(ideal, exact[p])
				}
				slices.SortFunc(ideal, func(a, b lexRef) int {
					return cmp.Or(cmp.Compare(b.score, a.score), strings.Compare(a.ticket, b.ticket), cmp.Compare(a.ordinal, b.ordinal))
				})
				for k := range min(need, len(ideal)) {
					if g, w := got[k], ideal[k]; g.ticket != w.ticket || g.ordinal != w.ordinal || g.score != w.score {
						t.Fatalf("%q budget %d need %d: rank %d = %s/%d %v, want %s/%d %v", query, budget, need, k,
							g.ticket, g.ordinal, g.score, w.ticket, w.ordinal, w.score)
					}
				}
				for _, c := range got {
					if w := exact[c.point]; c.score > w.score {
						t.Fatalf("%q: %s/%d scored %v above its exact %v", query, c.ticket, c.ordinal, c.score, w.score)
					}
				}
				for p, w := range exact {
					if cands[p] {
						continue
					}
					for _, term := range w.terms {
						if i := slices.Index(terms, term); limits[i] == st.df[i] {
							t.Fatalf("%q budget %d: %s/%d is missing but holds %q, read whole", query, budget, w.ticket, w.ordinal, term)
						}
					}
				}
				// A small lookup budget is kept.
				n := 0
				for _, points := range cappedLookups(st, lists[:len(terms)], limits, need, 3) {
					n += len(points)
				}
				if n > 3 {
					t.Fatalf("%d lookups over a budget of 3", n)
				}
			}
		}
	}
	if pruned == 0 {
		t.Fatal("the bound never spared a lookup: the test checks too little")
	}
}

func TestCappedLookups(t *testing.T) {
	// Term 0 read whole; term 1 capped to its best posting (tf 3); term 2
	// capped to nothing.
	p := func(id string, tf float32) lexPosting { return lexPosting{point: id, ticket: id, tf: tf, dl: 10} }
	st := lexStats{n: 1000, sumDL: 10000, df: []int{2, 50, 900}}
	b := p("b", 1)
	b.dl = 12 // a little below a on term 0
	lists := [][]lexPosting{{p("a", 1), b}, {p("c", 3)}, nil}
	limits := []int{2, 1, 0}
	got := cappedLookups(st, lists, limits, 10, 100)
	// Fewer candidates than the page: every candidate is looked up for each
	// capped term that did not list it.
	if !slices.Equal(got[1], []string{"a", "b"}) && !slices.Equal(got[1], []string{"b", "a"}) || len(got[2]) != 3 {
		t.Fatalf("lookups = %v", got)
	}
	// A page of one: a leads on the rare term 0 (5.99); b (5.54, longer)
	// could still pass it if it held term 1 as often as c does (up to 4.5):
	// both are looked up. c (4.7 on term 1) could gain at most term 2's
	// supremum, idf(900 of 1000) * 2.2 = 0.23: it cannot reach the page and
	// is not looked up.
	if got := cappedLookups(st, lists, limits, 1, 100); slices.Contains(got[2], "c") || len(got[2]) != 2 || len(got[1]) != 2 {
		t.Fatalf("page of one: lookups = %v, want a and b for terms 1 and 2, not c", got)
	}
	// The budget: a candidate's lookups are all made or none.
	got = cappedLookups(st, lists, limits, 10, 2)
	n := 0
	for _, ids := range got {
		n += len(ids)
	}
	if n > 2 {
		t.Fatalf("lookups = %v over a budget of 2", got)
	}
	// Nothing capped: no lookups.
	if got := cappedLookups(st, lists, []int{2, 50, 900}, 10, 100); len(got) != 0 {
		t.Fatalf("nothing capped, lookups %v", got)
	}
}

func TestCompleteAndPage(t *testing.T) {
	lists := [][]lexPosting{{{point: "a"}}, nil}
	if !complete(lists, []int{1, 0}) || complete(lists, []int{2, 0}) || complete(lists, []int{1, 1}) {
		t.Fatal("complete must hold exactly when every term has its planned postings")
	}
	cands := make([]lexCand, 5)
	for i := range cands {
		cands[i].ordinal = i
	}
	for _, tc := range []struct{ offset, k, first, n int }{{0, 2, 0, 2}, {3, 10, 3, 2}, {5, 1, 0, 0}, {9, 1, 0, 0}} {
		got := page(cands, tc.offset, tc.k)
		if len(got) != tc.n || (tc.n > 0 && got[0].ordinal != tc.first) {
			t.Fatalf("page(%d, %d) = %v", tc.offset, tc.k, got)
		}
	}
}

func TestChunkPoint(t *testing.T) {
	tk := retrieval.Ticket{ID: "SEC-12", Tenant: "acme", Project: "p1", Title: "Login fails"}
	c := retrieval.Chunk{Ordinal: 3, Text: "ERR_CONN_RESET after " + collideA + " " + collideB, Vector: []float32{0.6, 0.8}}
	p, err := chunkPoint(tk, c, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.GetId().GetUuid() != chunkID("SEC-12", 3).GetUuid() {
		t.Fatalf("id %v", p.GetId())
	}
	named := p.GetVectors().GetVectors().GetVectors()
	if dense := named[""].GetDense().GetData(); !slices.Equal(dense, c.Vector) {
		t.Fatalf("default (unnamed) vector %v, want %v", dense, c.Vector)
	}
	d := analyzeChunk(tk.ID, tk.Title, c.Text)
	sparse := named[lexVector].GetSparse()
	if !slices.Equal(sparse.GetIndices(), d.indices) || !slices.Equal(sparse.GetValues(), d.values) || len(named) != 2 {
		t.Fatalf("vectors %v, want the dense one and sparse %v %v", named, d.indices, d.values)
	}
	pl := p.GetPayload()
	if pl[keyLexLen].GetIntegerValue() != d.length || len(pl[keyLexTerms].GetListValue().GetValues()) != len(d.terms) ||
		len(pl[keyLexColl].GetStructValue().GetFields()) != 2 || pl[keyTicket].GetStringValue() != "SEC-12" || pl[keyOrdinal].GetIntegerValue() != 3 {
		t.Fatalf("payload %v", pl)
	}
	// Reading it back as a posting of each colliding term gives its own
	// frequency, whatever the shared sparse value.
	for term, want := range map[string]float32{collideA: 1, collideB: 1, "err_conn_reset": 1, "sec-12": 2} {
		i, ok := slices.BinarySearch(d.indices, termID(term))
		if !ok {
			t.Fatalf("%q has no sparse entry", term)
		}
		lp, ok := posting(&qdrant.ScoredPoint{Id: p.Id, Score: d.values[i], Payload: pl}, term)
		if !ok || lp.tf != want || lp.dl != float32(d.length) {
			t.Fatalf("%q: posting %+v, %v; want tf %v", term, lp, ok, want)
		}
	}
	// A collection without the lexical arm gets the plain point.
	p, err = chunkPoint(tk, c, false)
	if err != nil || !slices.Equal(p.GetVectors().GetVector().GetDense().GetData(), c.Vector) || p.GetPayload()[keyLexLen] != nil {
		t.Fatalf("plain point %v, %v", p, err)
	}
}

// A term's query: the sparse vector {id(term): 1} on "lex", so a posting's
// score is the chunk's frequency of the term, under the term's filter, with
// only the payload scoring needs.
func TestTermQuery(t *testing.T) {
	s := &Store{chunks: "c_chunks"}
	flt := termFilter(retrieval.Filter{Tenant: "acme", AllProjects: true}, "err_conn_reset")
	q := s.termQuery("err_conn_reset", flt, 1234)
	sparse := q.GetQuery().GetNearest().GetSparse()
	if !slices.Equal(sparse.GetIndices(), []uint32{termID("err_conn_reset")}) || !slices.Equal(sparse.GetValues(), []float32{1}) {
		t.Fatalf("query vector %v", sparse)
	}
	if q.GetUsing() != lexVector || q.GetCollectionName() != "c_chunks" || q.GetLimit() != 1234 || q.GetFilter() != flt {
		t.Fatalf("query %v", q)
	}
	if fields := q.GetWithPayload().GetInclude().GetFields(); !slices.Equal(fields, []string{keyTicket, keyOrdinal, keyLexLen, keyLexColl}) {
		t.Fatalf("payload %v: postings need ticket, ordinal, length and lex_coll, not the text", fields)
	}
}

// BenchmarkRankLexical: the Go side of a lexical search at the default
// budget (200,000 postings over three terms, as a ticket-key query over a
// large tenant reads), without the network.
func BenchmarkRankLexical(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 250_000
	st := lexStats{n: n, sumDL: 40 * n, df: []int{3, 12, DefaultLexicalMaxPostings - 15}}
	lists := make([][]lexPosting, 3)
	for i, df := range st.df {
		for k := range df {
			id := rng.IntN(n)
			if i == 2 {
				id = k
			}
			lists[i] = append(lists[i], lexPosting{point: chunkID(fmt.Sprint("T-", id), 0).GetUuid(), ticket: fmt.Sprint("T-", id),
				dl: float32(10 + rng.IntN(60)), tf: float32(1 + rng.IntN(3))})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		page(topLexical(scoreLexical(st, lists), 50), 0, 50)
	}
}

// topLexical is the head of the full ranking, ties (equal scores, ordered by
// ticket and ordinal) included, for any m.
func TestTopLexical(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cands := make([]lexCand, 500)
	for i := range cands {
		cands[i] = lexCand{lexPosting: lexPosting{ticket: fmt.Sprint("T-", rng.IntN(100)), ordinal: rng.IntN(3)}, score: float64(rng.IntN(20))}
	}
	before := slices.Clone(cands)
	all := topLexical(cands, len(cands))
	if !slices.IsSortedFunc(all, func(a, b lexCand) int { return better(&a, &b) }) {
		t.Fatal("full ranking not sorted")
	}
	for _, m := range []int{0, 1, 2, 7, 50, 499, 500, 600} {
		got := topLexical(cands, m)
		if want := all[:min(m, len(all))]; !slices.Equal(got, want) {
			t.Fatalf("top %d differs from the full ranking's head", m)
		}
	}
	if !slices.Equal(cands, before) {
		t.Fatal("topLexical reordered its input")
	}
}
