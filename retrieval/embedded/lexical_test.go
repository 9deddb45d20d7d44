package embedded

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// TestLexicalChurnMatchesRebuild drives one store through enough upserts,
// deletes and moves that document slots and term ids are reused and
// partitions are renumbered, then checks that every search answers exactly
// (hits and bit-identical scores) what a store built from the surviving
// tickets alone answers, and that the garbage stays bounded.
func TestLexicalChurnMatchesRebuild(t *testing.T) {
	meta := retrieval.IndexMeta{Model: "m", Dim: 2}
	open := func() *Store {
		s, err := Open(t.Context(), Config{Meta: meta})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	churned := open()
	defer func(n int) { compactMin = n }(compactMin)
	compactMin = 16
	rng := rand.New(rand.NewPCG(3, 9))
	projects := []string{"a", "b", "c"}
	type state struct {
		tk     retrieval.Ticket
		chunks []retrieval.Chunk
	}
	live := map[string]*state{}
	word := func() string {
		if rng.IntN(4) == 0 {
			return fmt.Sprintf("once%d", rng.IntN(1_000_000)) // mostly unique: ids come and go
		}
		return fmt.Sprintf("w%d", rng.IntN(40))
	}
	for step := range 12_000 {
		id := fmt.Sprintf("T%d", rng.IntN(600))
		// Phases: churn, then delete nearly every ticket (the slot arrays
		// are renumbered), then churn again over the freed slots and ids.
		if step > 4000 && step < 8000 {
			if live[id] != nil && rng.IntN(20) != 0 {
				if err := churned.Delete(t.Context(), id); err != nil {
					t.Fatal(err)
				}
				delete(live, id)
			}
			continue
		}
		switch op := rng.IntN(10); {
		case op < 6 || live[id] == nil:
			st := &state{tk: retrieval.Ticket{ID: id, Tenant: "acme", Project: projects[rng.IntN(3)], Title: word() + " " + word()}}
			for k := range 1 + rng.IntN(4) {
				text := ""
				for range rng.IntN(12) {
					text += word() + " "
				}
				st.chunks = append(st.chunks, retrieval.Chunk{Ordinal: k, Text: text, Vector: []float32{1, 0}})
			}
			if err := churned.Upsert(t.Context(), st.tk, st.chunks); err != nil {
				t.Fatal(err)
			}
			live[id] = st
		case op < 8:
			if err := churned.Delete(t.Context(), id); err != nil {
				t.Fatal(err)
			}
			delete(live, id)
		default:
			p := projects[rng.IntN(3)]
			if err := churned.Move(t.Context(), id, p); err != nil {
				t.Fatal(err)
			}
			live[id].tk.Project = p
		}
	}
	fresh := open()
	ids := make([]string, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := fresh.Upsert(t.Context(), live[id].tk, live[id].chunks); err != nil {
			t.Fatal(err)
		}
	}

	filters := []retrieval.Filter{
		{Tenant: "acme", AllProjects: true},
		{Tenant: "acme", Projects: []string{"a"}},
		{Tenant: "acme", Projects: []string{"b", "c"}, Tickets: ids[:min(5, len(ids))]},
		{Tenant: "acme", Tickets: ids[:min(20, len(ids))]},
	}
	queries := []string{"w1", "w2 w3 w39", "w0 w7 T5 T17", "nothing here", "once5 w4"}
	for _, f := range filters {
		for _, q := range queries {
			req := retrieval.LexicalRequest{Terms: lexical.Terms(q), Filter: f, K: 1000}
			got, err := churned.SearchLexical(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			want, err := fresh.SearchLexical(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			if len(want.Hits) == 0 && q != "nothing here" {
				t.Fatalf("%q %+v: the rebuilt store finds nothing; the test is too weak", q, f)
			}
			if !slices.EqualFunc(got.Hits, want.Hits, func(a, b retrieval.Hit) bool {
				return a.TicketID == b.TicketID && a.Ordinal == b.Ordinal && a.Score == b.Score
			}) {
				t.Fatalf("%q %+v:\nchurned %v\nrebuilt %v", q, f, got.Hits, want.Hits)
			}
		}
	}

	// Concurrent searches each get their own accumulator: the same answers.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 40 {
				req := retrieval.LexicalRequest{Terms: lexical.Terms(queries[(g+i)%len(queries)]), Filter: filters[i%len(filters)], K: 1000}
				got, err := churned.SearchLexical(t.Context(), req)
				if err != nil {
					t.Error(err)
					return
				}
				want, err := fresh.SearchLexical(t.Context(), req)
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.EqualFunc(got.Hits, want.Hits, func(a, b retrieval.Hit) bool {
					return a.TicketID == b.TicketID && a.Ordinal == b.Ordinal && a.Score == b.Score
				}) {
					t.Errorf("concurrent %+v: answers differ", req)
					return
				}
			}
		})
	}
	wg.Wait()

	// Bounded garbage: the dictionary holds exactly the live terms, and each
	// partition's slots and postings stay within a constant factor of its
	// live documents.
	ix, rx := churned.ix, fresh.ix
	if len(ix.dict.ids) != len(rx.dict.ids) {
		t.Errorf("dictionary holds %d terms, the live tickets have %d", len(ix.dict.ids), len(rx.dict.ids))
	}
	for _, p := range ix.tenants["acme"] {
		lp := p.lex
		posts, livePosts := 0, 0
		for id, tl := range lp.terms {
			if ix.dict.terms[id] == "" {
				t.Errorf("partition %s keeps postings of freed term id %d", p.project, id)
			}
			posts += int(tl.n)
			livePosts += int(tl.df)
		}
		if len(lp.dl) > 4*lp.live+1024 || posts > 2*livePosts+8*len(lp.terms) || len(lp.arena) > 4*(posts+len(lp.terms))+2*compactMin {
			t.Errorf("partition %s: %d slots, %d postings in an arena of %d for %d live documents and %d live postings",
				p.project, len(lp.dl), posts, len(lp.arena), lp.live, livePosts)
		}
	}
	shrinks, rebuilds := 0, 0
	for _, p := range ix.tenants["acme"] {
		shrinks += p.lex.shrinks
		rebuilds += p.lex.rebuilds - p.lex.shrinks
	}
	if shrinks == 0 || rebuilds == 0 {
		t.Errorf("%d renumberings and %d arena rebuilds; the test does not exercise both", shrinks, rebuilds)
	}
	if len(ix.dict.free) == 0 {
		t.Error("no term id was ever freed; the test does not exercise reuse")
	}
}

// TestLexicalPruningChangesNoAnswer: skipping partitions whose score bound is
// below the m-th score gives exactly the hits and scores of scoring every
// allowed partition, for every k and offset, over many partitions with varied
// lengths and frequencies, with ties across partitions at every cut (the same
// text in many tickets: the lower ticket ids must win), named tickets, and
// after deletes and rewrites have left the bounds loose and the postings
// compacted and renumbered. It also checks that partitions are skipped.
func TestLexicalPruningChangesNoAnswer(t *testing.T) {
	s, err := Open(t.Context(), Config{Meta: retrieval.IndexMeta{Model: "prune", Dim: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer func(n int) { compactMin = n }(compactMin)
	compactMin = 8
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := []string{"login", "timeout", "replica", "lag", "crash", "ipad", "refund", "zebra"}
	write := func(i int) {
		id := fmt.Sprintf("KEY-%d", i)
		var cs []retrieval.Chunk
		title := vocab[rng.IntN(len(vocab))]
		if i%5 == 0 {
			// Identical chunks in many partitions: equal scores across them.
			cs = []retrieval.Chunk{{Text: "timeout lag", Vector: []float32{1, 0}}}
			title = "same"
		} else {
			for k := range 1 + rng.IntN(3) {
				var words []string
				for range rng.IntN(14) {
					words = append(words, vocab[rng.IntN(len(vocab))])
				}
				if rng.IntN(40) == 0 {
					words = append(words, "nixphadru")
				}
				cs = append(cs, retrieval.Chunk{Ordinal: k, Text: strings.Join(words, " "), Vector: []float32{1, 0}})
			}
		}
		tk := retrieval.Ticket{ID: id, Tenant: "acme", Project: fmt.Sprintf("p%02d", rng.IntN(40)), Title: title}
		if err := s.Upsert(t.Context(), tk, cs); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 800 {
		write(i)
	}
	queries := []string{"KEY-17", "key login", "timeout lag", "timeout lag zebra", "crash", "KEY-5 ipad refund",
		"replica replica login", "nixphadru timeout", "same"}
	filters := []retrieval.Filter{
		{Tenant: "acme", AllProjects: true},
		{Tenant: "acme", Projects: []string{"p01", "p02", "p03", "p10", "p11", "p12"}, Tickets: []string{"KEY-17", "KEY-5", "KEY-40"}},
	}
	skippedAny := false
	check := func(when string) {
		t.Helper()
		for _, q := range queries {
			terms := lexical.QueryTerms(lexical.Terms(q))
			for _, f := range filters {
				for _, m := range []int{1, 2, 3, 5, 10, 25, 100} {
					got, skipped := s.ix.searchLexical(terms, f, m, &s.lexScratch, true)
					want, none := s.ix.searchLexical(terms, f, m, &s.lexScratch, false)
					if none != 0 {
						t.Fatalf("skipped %d partitions without pruning", none)
					}
					if !slices.Equal(got, want) {
						t.Fatalf("%s: %q m=%d %+v:\n got %v\nwant %v", when, q, m, f, got, want)
					}
					skippedAny = skippedAny || skipped > 0
				}
			}
		}
	}
	check("fresh")
	for i := range 600 {
		if rng.IntN(2) == 0 {
			if err := s.Delete(t.Context(), fmt.Sprintf("KEY-%d", i)); err != nil {
				t.Fatal(err)
			}
		} else {
			write(i)
		}
	}
	check("after churn")
	if !skippedAny {
		t.Fatal("no partition was ever skipped: the test does not exercise pruning")
	}
}
