package storetest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// The lexical half of the suite runs for stores that implement
// retrieval.LexicalSearcher. The reference scores every chunk the filter
// allows with lexical's BM25, with the statistics of exactly those chunks, so
// a store that counts a chunk outside the filter in its statistics fails on
// the scores even when no such chunk is returned.

func runLexical(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, *fixture, retrieval.LexicalSearcher)
	}{
		{"LexicalMatchesReference", testLexicalReference},
		{"LexicalExactTermsFirst", testLexicalExactTerms},
		{"LexicalNeverOutsideFilter", testLexicalFilter},
		{"LexicalFollowsUpsertDeleteMove", testLexicalWrites},
		{"LexicalPaging", testLexicalPaging},
		{"LexicalHashCollisions", testLexicalCollisions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, open, Meta)
			ls, ok := f.s.(retrieval.LexicalSearcher)
			if !ok {
				t.Skip("store has no lexical index (not a retrieval.LexicalSearcher)")
			}
			tc.fn(t, f, ls)
		})
	}
}

// words is the vocabulary of the lexical fixtures: common words, which every
// tenant uses, so statistics differ by filter.
var words = strings.Fields("login timeout error database replica lag payment refund invoice " +
	"layout mobile crash upload export report slow query index cache token expired")

// lexChunks builds n chunks of random words, with vectors.
func (f *fixture) lexChunks(id string, n int, extra ...string) []retrieval.Chunk {
	out := f.chunks(id, n)
	for i := range out {
		ws := make([]string, 3+f.rng.IntN(12))
		for j := range ws {
			ws[j] = words[f.rng.IntN(len(words))]
		}
		if i == 0 {
			ws = append(ws, extra...)
		}
		out[i].Text = strings.Join(ws, " ")
	}
	return out
}

func (f *fixture) lexPopulate(tenants []string, projects, tickets int) {
	f.t.Helper()
	for _, tn := range tenants {
		for i := range tickets {
			p := fmt.Sprintf("p%d", f.rng.IntN(projects))
			id := fmt.Sprintf("%s-T%04d", tn, i)
			tk := ticket(id, tn, p)
			tk.Title = words[f.rng.IntN(len(words))] + " " + words[f.rng.IntN(len(words))]
			f.upsert(tk, f.lexChunks(id, 1+f.rng.IntN(3)))
		}
	}
}

// lexSearch is the reference lexical ranking of terms under flt.
func (m *model) lexSearch(terms []string, flt retrieval.Filter) []refHit {
	terms = lexical.QueryTerms(terms)
	type doc struct {
		h retrieval.Hit
		d lexical.Doc
	}
	var docs []doc
	var sumDL float64
	for id, t := range m.tickets {
		if !m.matches(t, flt) {
			continue
		}
		for _, c := range m.chunks[id] {
			d := lexical.Analyze(id, t.Title, c.Text)
			sumDL += float64(d.Len)
			docs = append(docs, doc{retrieval.Hit{TicketID: id, Tenant: t.Tenant, Project: t.Project, Title: t.Title, Ordinal: c.Ordinal, Text: c.Text}, d})
		}
	}
	if len(docs) == 0 {
		return nil
	}
	idf := make([]float64, len(terms))
	for i, term := range terms {
		df := 0
		for _, d := range docs {
			if d.d.TF(term) > 0 {
				df++
			}
		}
		idf[i] = lexical.IDF(len(docs), df)
	}
	avg := sumDL / float64(len(docs))
	var out []refHit
	for _, d := range docs {
		var s float64
		matched := false
		for i, term := range terms {
			if tf := d.d.TF(term); tf > 0 {
				matched = true
				s += lexical.TermScore(idf[i], tf, d.d.Len, avg)
			}
		}
		if matched {
			h := d.h
			h.Score = float32(s)
			out = append(out, refHit{Hit: h, score: s})
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

func (f *fixture) lexCheck(ls retrieval.LexicalSearcher, query string, flt retrieval.Filter, k, offset int) []retrieval.Hit {
	f.t.Helper()
	terms := lexical.Terms(query)
	res, err := ls.SearchLexical(f.ctx, retrieval.LexicalRequest{Terms: terms, Filter: flt, K: k, Offset: offset})
	if err != nil {
		f.t.Fatalf("SearchLexical(%q, %+v): %v", query, flt, err)
	}
	if res.Plan == "" {
		f.t.Fatalf("SearchLexical(%q): no plan reported", query)
	}
	all := f.ref.lexSearch(terms, flt)
	var want []refHit
	if offset < len(all) {
		want = all[offset:min(len(all), offset+k)]
	}
	f.compare(res.Hits, want, all, flt)
	if res.Exact && len(res.Hits) < k && offset+len(res.Hits) != len(all) {
		f.t.Fatalf("SearchLexical(%q, %+v): exact plan returned %d of %d matches", query, flt, len(res.Hits), len(all)-offset)
	}
	return res.Hits
}

func testLexicalReference(t *testing.T, f *fixture, ls retrieval.LexicalSearcher) {
	f.lexPopulate([]string{"acme", "globex"}, 5, 60)
	queries := []string{"login timeout", "database", "payment refund invoice", "crash", "nothing-matches-this", "acme-T0003"}
	filters := []retrieval.Filter{
		{Tenant: "acme", AllProjects: true},
		{Tenant: "acme", Projects: []string{"p1"}},
		{Tenant: "acme", Projects: []string{"p0", "p3"}, Tickets: []string{"acme-T0003", "acme-T0010", "globex-T0001"}},
		{Tenant: "acme", Tickets: []string{"acme-T0005", "acme-T0006"}},
		{Tenant: "globex", Projects: []string{"p2", "missing"}},
	}
	for _, q := range queries {
		for _, flt := range filters {
			f.lexCheck(ls, q, flt, 10, 0)
		}
	}
}

func testLexicalExactTerms(t *testing.T, f *fixture, ls retrieval.LexicalSearcher) {
	f.lexPopulate([]string{"acme"}, 3, 40)
	special := map[string]string{
		"acme-key": "failed with ERR_CONN_RESET after upgrade",
		"acme-ver": "regression since 1.22.1 on db01.prod",
		"acme-sql": "serialization failure SQLSTATE 40001 in fooBarService",
	}
	for id, text := range special {
		tk := ticket(id, "acme", "p0")
		f.upsert(tk, []retrieval.Chunk{{Ordinal: 0, Text: text, Vector: f.unitVector()}})
	}
	flt := retrieval.Filter{Tenant: "acme", AllProjects: true}
	for q, want := range map[string]string{
		"ERR_CONN_RESET": "acme-key", "err_conn_reset": "acme-key", "1.22.1": "acme-ver",
		"40001": "acme-sql", "foo_bar_service": "", "fooBarService": "acme-sql", "acme-ver": "acme-ver",
	} {
		hits := f.lexCheck(ls, q, flt, 5, 0)
		if want == "" {
			continue
		}
		if len(hits) == 0 || hits[0].TicketID != want {
			t.Fatalf("query %q: top hit %s, want %s", q, fmtHits(hits), want)
		}
	}
}

func testLexicalFilter(t *testing.T, f *fixture, ls retrieval.LexicalSearcher) {
	f.lexPopulate([]string{"acme", "globex"}, 4, 50)
	// A term only other tenants and other projects hold must find nothing.
	f.upsert(ticket("globex-secret", "globex", "p0"), []retrieval.Chunk{{Ordinal: 0, Text: "codename zebrafish", Vector: f.unitVector()}})
	f.upsert(ticket("acme-hidden", "acme", "hidden"), []retrieval.Chunk{{Ordinal: 0, Text: "codename zebrafish", Vector: f.unitVector()}})
	for _, flt := range []retrieval.Filter{
		{Tenant: "acme", Projects: []string{"p0", "p1", "p2", "p3"}},
		{Tenant: "acme", Tickets: []string{"globex-secret"}},
		{Tenant: "acme", Projects: []string{"p0"}, Tickets: []string{"acme-T0001"}},
		{Tenant: "", AllProjects: true},
		{Tenant: "acme"},
	} {
		if hits := f.lexCheck(ls, "zebrafish codename", flt, 10, 0); len(hits) != 0 {
			t.Fatalf("filter %+v returned %s", flt, fmtHits(hits))
		}
		for _, h := range f.lexCheck(ls, "login error cache", flt, 50, 0) {
			if !f.ref.matches(f.ref.tickets[h.TicketID], flt) {
				t.Fatalf("filter %+v returned %s/%d", flt, h.TicketID, h.Ordinal)
			}
		}
	}
	// Named directly, the hidden ticket is found.
	hits := f.lexCheck(ls, "zebrafish", retrieval.Filter{Tenant: "acme", Projects: []string{"p0"}, Tickets: []string{"acme-hidden"}}, 10, 0)
	if len(hits) != 1 || hits[0].TicketID != "acme-hidden" {
		t.Fatalf("named ticket: got %s", fmtHits(hits))
	}
}

func testLexicalWrites(t *testing.T, f *fixture, ls retrieval.LexicalSearcher) {
	f.lexPopulate([]string{"acme"}, 3, 30)
	all := retrieval.Filter{Tenant: "acme", AllProjects: true}
	f.upsert(ticket("acme-x", "acme", "p0"), f.lexChunks("acme-x", 2, "quokka"))
	if hits := f.lexCheck(ls, "quokka", all, 5, 0); len(hits) != 1 {
		t.Fatalf("after upsert: %s", fmtHits(hits))
	}
	// Replaced: the old text's term is gone, the new one found.
	f.upsert(ticket("acme-x", "acme", "p0"), f.lexChunks("acme-x", 1, "wombat"))
	if hits := f.lexCheck(ls, "quokka", all, 5, 0); len(hits) != 0 {
		t.Fatalf("after replace, old term still found: %s", fmtHits(hits))
	}
	f.lexCheck(ls, "wombat", all, 5, 0)
	// Moved: found under the new project only.
	f.move("acme-x", "p9")
	if hits := f.lexCheck(ls, "wombat", retrieval.Filter{Tenant: "acme", Projects: []string{"p0"}}, 5, 0); len(hits) != 0 {
		t.Fatalf("after move, found under the old project: %s", fmtHits(hits))
	}
	if hits := f.lexCheck(ls, "wombat", retrieval.Filter{Tenant: "acme", Projects: []string{"p9"}}, 5, 0); len(hits) != 1 {
		t.Fatalf("after move, not found under the new project: %s", fmtHits(hits))
	}
	f.move("acme-x", "p0") // and back: no duplicate
	f.lexCheck(ls, "wombat login", all, 10, 0)
	// Moved to another tenant by re-upsert.
	f.upsert(ticket("acme-x", "globex", "p0"), f.lexChunks("acme-x", 1, "wombat"))
	if hits := f.lexCheck(ls, "wombat", all, 5, 0); len(hits) != 0 {
		t.Fatalf("after tenant change, found in the old tenant: %s", fmtHits(hits))
	}
	f.delete("acme-x")
	if hits := f.lexCheck(ls, "wombat", retrieval.Filter{Tenant: "globex", AllProjects: true}, 5, 0); len(hits) != 0 {
		t.Fatalf("after delete: %s", fmtHits(hits))
	}
	// Many deletes (the postings' garbage collection) keep the statistics right.
	for i := range 25 {
		f.delete(fmt.Sprintf("acme-T%04d", i))
	}
	f.lexCheck(ls, "login timeout error", all, 20, 0)
}

func testLexicalPaging(t *testing.T, f *fixture, ls retrieval.LexicalSearcher) {
	f.lexPopulate([]string{"acme"}, 2, 50)
	flt := retrieval.Filter{Tenant: "acme", AllProjects: true}
	seen := map[[2]string]bool{}
	for off := 0; ; off += 7 {
		hits := f.lexCheck(ls, "login error slow", flt, 7, off)
		for _, h := range hits {
			if seen[key(h)] {
				t.Fatalf("offset %d: %s/%d seen on an earlier page", off, h.TicketID, h.Ordinal)
			}
			seen[key(h)] = true
		}
		if len(hits) < 7 {
			break
		}
	}
	if want := len(f.ref.lexSearch(lexical.Terms("login error slow"), flt)); len(seen) != want {
		t.Fatalf("pages held %d hits, want %d", len(seen), want)
	}
}

// collidingTerms are pairs of tokens with the same 32-bit FNV-1a hash: a store
// that keys postings by a hash of the term (Qdrant's sparse indices) must not
// let one stand for the other, in postings or in frequencies.
var collidingTerms = [][2]string{{"w673879", "w1180600"}}

func testLexicalCollisions(t *testing.T, f *fixture, ls retrieval.LexicalSearcher) {
	f.lexPopulate([]string{"acme"}, 2, 20)
	all := retrieval.Filter{Tenant: "acme", AllProjects: true}
	for _, pair := range collidingTerms {
		a, b := pair[0], pair[1]
		f.upsert(ticket("acme-a", "acme", "p0"), []retrieval.Chunk{{Ordinal: 0, Text: "only " + a, Vector: f.unitVector()}})
		f.upsert(ticket("acme-b", "acme", "p1"), []retrieval.Chunk{{Ordinal: 0, Text: "only " + b + " " + b, Vector: f.unitVector()}})
		// Both in one chunk, with different frequencies.
		f.upsert(ticket("acme-ab", "acme", "p0"), []retrieval.Chunk{{Ordinal: 0, Text: a + " " + b + " " + b + " " + b, Vector: f.unitVector()}})
		for _, q := range []struct {
			term, only, not string
		}{{a, "acme-a", "acme-b"}, {b, "acme-b", "acme-a"}} {
			hits := f.lexCheck(ls, q.term, all, 10, 0)
			ids := map[string]bool{}
			for _, h := range hits {
				ids[h.TicketID] = true
			}
			if len(hits) != 2 || !ids[q.only] || !ids["acme-ab"] || ids[q.not] {
				t.Fatalf("query %q: %s, want %s and acme-ab", q.term, fmtHits(hits), q.only)
			}
		}
		f.lexCheck(ls, a+" "+b, all, 10, 0)
		f.lexCheck(ls, a, retrieval.Filter{Tenant: "acme", Projects: []string{"p1"}}, 10, 0)
	}
}
