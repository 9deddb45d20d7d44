package qdrant_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/retrieval/lexical"
	"github.com/clearance-dev/clearance/retrieval/qdrant"
)

// The lexical arm against a real server (QDRANT_URL), differentially: the
// embedded store, whose lexical arm is exact, indexes the same tickets and
// is the reference. The conformance suite (TestConformance) runs the lexical
// cases of retrieval/storetest on top of these.

var lexMeta = retrieval.IndexMeta{Model: "qdrant-lexical-test", Dim: 8}

// lexPair opens an empty Qdrant store (its collections dropped at the end)
// and an in-memory embedded store; reopen opens the Qdrant collections again
// with another postings budget.
func lexPair(t *testing.T) (q *qdrant.Store, ref *embedded.Store, reopen func(maxPostings int) *qdrant.Store) {
	t.Helper()
	url := testenv.QdrantURL(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "clearance_lextest_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	reopen = func(maxPostings int) *qdrant.Store {
		s, err := qdrant.Open(ctx, qdrant.Config{URL: url, Collection: prefix, Meta: lexMeta, Exact: true, LexicalMaxPostings: maxPostings})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	q = reopen(0)
	t.Cleanup(func() { _ = q.Drop(context.Background()) })
	ref, err := embedded.Open(ctx, embedded.Config{Meta: lexMeta})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	return q, ref, reopen
}

const collideA, collideB = "w673879", "w1180600" // same FNV-1a id

func lexLoad(t *testing.T, stores ...retrieval.Store) {
	t.Helper()
	rng := mrand.New(mrand.NewPCG(20, 20))
	words := strings.Fields("login timeout error database replica lag payment refund cache token slow query")
	vec := func() []float32 {
		v := make([]float32, lexMeta.Dim)
		var n float64
		for i := range v {
			v[i] = float32(rng.NormFloat64())
			n += float64(v[i]) * float64(v[i])
		}
		for i := range v {
			v[i] /= float32(math.Sqrt(n))
		}
		return v
	}
	for i := range 120 {
		tenant := []string{"acme", "globex"}[i%2]
		tk := retrieval.Ticket{ID: fmt.Sprintf("%s-T%03d", tenant, i), Tenant: tenant, Project: fmt.Sprintf("p%d", rng.IntN(3)),
			Title: words[rng.IntN(len(words))] + " " + words[rng.IntN(len(words))]}
		var chunks []retrieval.Chunk
		for k := range 1 + rng.IntN(3) {
			ws := make([]string, 3+rng.IntN(15))
			for j := range ws {
				ws[j] = words[rng.IntN(len(words))]
			}
			switch i % 5 { // both tenants get each case
			case 1:
				ws = append(ws, collideA)
			case 2:
				ws = append(ws, collideB, collideB)
			case 3:
				ws = append(ws, collideA, collideB)
			}
			chunks = append(chunks, retrieval.Chunk{Ordinal: k, Text: strings.Join(ws, " "), Vector: vec()})
		}
		for _, s := range stores {
			if err := s.Upsert(context.Background(), tk, chunks); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func lexSearch(t *testing.T, s retrieval.LexicalSearcher, query string, f retrieval.Filter, k int) retrieval.SearchResult {
	t.Helper()
	res, err := s.SearchLexical(context.Background(), retrieval.LexicalRequest{Terms: lexical.Terms(query), Filter: f, K: k})
	if err != nil {
		t.Fatalf("SearchLexical(%q, %+v): %v", query, f, err)
	}
	return res
}

var lexFilters = []retrieval.Filter{
	{Tenant: "acme", AllProjects: true},
	{Tenant: "acme", Projects: []string{"p1"}},
	{Tenant: "acme", Projects: []string{"p0"}, Tickets: []string{"acme-T004", "globex-T001"}},
	{Tenant: "globex", Projects: []string{"p2", "missing"}},
}

func TestLexicalMatchesEmbedded(t *testing.T) {
	q, ref, _ := lexPair(t)
	lexLoad(t, q, ref)
	for _, query := range []string{"login timeout", "database", collideA, collideB + " cache", "acme-T010", "nothing"} {
		for _, f := range lexFilters {
			got, want := lexSearch(t, q, query, f, 400), lexSearch(t, ref, query, f, 400)
			if got.Plan != retrieval.PlanBM25 || !got.Exact {
				t.Fatalf("%q %+v: plan %q exact %v, want bm25, exact", query, f, got.Plan, got.Exact)
			}
			if len(got.Hits) != len(want.Hits) {
				t.Fatalf("%q %+v: %d hits, embedded %d", query, f, len(got.Hits), len(want.Hits))
			}
			// The embedded store orders equal float32 scores by id, this store
			// by the float64 sum first: compare in one order.
			byScore := func(a, b retrieval.Hit) int {
				return cmp.Or(cmp.Compare(b.Score, a.Score), strings.Compare(a.TicketID, b.TicketID), cmp.Compare(a.Ordinal, b.Ordinal))
			}
			slices.SortStableFunc(got.Hits, byScore)
			slices.SortStableFunc(want.Hits, byScore)
			for i, h := range want.Hits {
				g := got.Hits[i]
				if g.TicketID != h.TicketID || g.Ordinal != h.Ordinal || g.Score != h.Score || g.Text != h.Text || g.Project != h.Project {
					t.Fatalf("%q %+v: rank %d = %s/%d %v, embedded %s/%d %v", query, f, i, g.TicketID, g.Ordinal, g.Score, h.TicketID, h.Ordinal, h.Score)
				}
			}
		}
	}
	// A colliding id never makes a chunk that lacks the term a posting.
	for _, h := range lexSearch(t, q, collideA, retrieval.Filter{Tenant: "acme", AllProjects: true}, 400).Hits {
		if !strings.Contains(h.Text, collideA) {
			t.Fatalf("query %s found %s/%d without it: %q", collideA, h.TicketID, h.Ordinal, h.Text)
		}
	}
}

// A budget smaller than a term's postings (the ticket key's prefix "acme" is
// in every chunk of the tenant): the answer says so (exact:false,
// bm25-capped), the key's chunks still come first, and every score it gives
// is the exact one.
func TestLexicalCappedIsReportedAndScoresExact(t *testing.T) {
	q, ref, reopen := lexPair(t)
	lexLoad(t, q, ref)
	small := reopen(60)
	f := retrieval.Filter{Tenant: "acme", AllProjects: true}
	got := lexSearch(t, small, "login acme-T010", f, 10)
	if got.Plan != qdrant.PlanBM25Capped || got.Exact {
		t.Fatalf("plan %q exact %v, want %s and exact:false", got.Plan, got.Exact, qdrant.PlanBM25Capped)
	}
	all := lexSearch(t, ref, "login acme-T010", f, 1000)
	score := map[string]float32{}
	for _, h := range all.Hits {
		score[fmt.Sprint(h.TicketID, "/", h.Ordinal)] = h.Score
	}
	if len(got.Hits) == 0 {
		t.Fatal("no hits")
	}
	for _, h := range got.Hits {
		if want, ok := score[fmt.Sprint(h.TicketID, "/", h.Ordinal)]; !ok || want != h.Score {
			t.Fatalf("%s/%d: score %v, exact score %v (found %v)", h.TicketID, h.Ordinal, h.Score, want, ok)
		}
	}
	// The rare terms fit the budget: the key's chunks rank first, as exactly.
	if all.Hits[0].TicketID != "acme-T010" || got.Hits[0].TicketID != "acme-T010" {
		t.Fatalf("top hit %s, embedded %s, want acme-T010", got.Hits[0].TicketID, all.Hits[0].TicketID)
	}
	// Within the budget, the same store answers exactly.
	if res := lexSearch(t, small, "t010", f, 10); res.Plan != retrieval.PlanBM25 || !res.Exact {
		t.Fatalf("small query: plan %q exact %v", res.Plan, res.Exact)
	}
}
