package indexer

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// newEmbedder is the built-in hashing embedder, small for fast tests.
func newEmbedder() retrieval.Embedder { return retrieval.NewHashing(retrieval.HashingConfig{Dim: 32}) }

func openStore(t testing.TB, dir string, emb retrieval.Embedder) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Config{DataDir: dir, Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// genTickets makes n tickets over a few tenants and projects with bodies of
// 0 to ~maxWords words.
func genTickets(seed uint64, n, maxWords int) []Row {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]Row, n)
	for i := range out {
		tenant := fmt.Sprintf("tenant%d", i%3)
		words := make([]string, r.IntN(maxWords+1))
		for k := range words {
			words[k] = fmt.Sprintf("w%d", r.IntN(500))
		}
		out[i] = Row{Ticket: retrieval.Ticket{
			ID:        fmt.Sprintf("T-%05d", i),
			Tenant:    tenant,
			Project:   fmt.Sprintf("%s-p%d", tenant, r.IntN(5)),
			Title:     fmt.Sprintf("ticket %d about w%d", i, r.IntN(500)),
			Body:      strings.Join(words, " "),
			UpdatedAt: time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC),
		}}
	}
	return out
}

func writeJSONL(t testing.TB, path string, rows []Row, extra ...string) {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Write elsewhere and rename, so a reader never sees half a file, and
	// bump the mtime so the source notices the change even within one tick.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// expected is the index a source should produce: live tickets by id.
func expected(rows []Row) map[string]retrieval.Ticket {
	m := map[string]retrieval.Ticket{}
	for _, r := range rows {
		if r.Deleted {
			delete(m, r.ID)
		} else {
			m[r.ID] = r.Ticket
		}
	}
	return m
}

// checkStore compares a store with the tickets it should hold: same ids, same
// tenants, projects and content, chunk counts as the chunker gives.
func checkStore(t testing.TB, s retrieval.Store, want map[string]retrieval.Ticket, c Chunker) {
	t.Helper()
	ctx := context.Background()
	got := map[string]retrieval.TicketRef{}
	for ref, err := range s.Tickets(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := got[ref.ID]; dup {
			t.Fatalf("ticket %s listed twice", ref.ID)
		}
		got[ref.ID] = ref
	}
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for id, w := range want {
		ref, ok := got[id]
		if !ok {
			report("ticket %s missing from the store", id)
			continue
		}
		if ref.Tenant != w.Tenant || ref.Project != w.Project {
			report("ticket %s in %s/%s, want %s/%s", id, ref.Tenant, ref.Project, w.Tenant, w.Project)
		}
		if !sameContent(ref.ContentHash, ContentHash(w)) {
			report("ticket %s has stale content (hash %s, want %s)", id, ref.ContentHash, ContentHash(w))
		}
		if n := c.Count(w); ref.Chunks != n {
			report("ticket %s has %d chunks, want %d", id, ref.Chunks, n)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			report("extra ticket %s in the store", id)
		}
	}
	if bad > 10 {
		t.Errorf("... %d differences in all", bad)
	}
	wantChunks := 0
	for _, w := range want {
		wantChunks += c.Count(w)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tickets != len(want) || st.Chunks != wantChunks {
		t.Errorf("stats: %d tickets, %d chunks; want %d, %d", st.Tickets, st.Chunks, len(want), wantChunks)
	}
	// The lexical arm, where the store has one, holds every chunk of every
	// ticket under its tenant and project: the ticket's id is a term of each.
	lex, ok := s.(retrieval.LexicalSearcher)
	if !ok {
		return
	}
	bad = 0
	for id, w := range want {
		n := c.Count(w)
		res, err := lex.SearchLexical(ctx, retrieval.LexicalRequest{Terms: lexical.Terms(id),
			Filter: retrieval.Filter{Tenant: w.Tenant, Tickets: []string{id}}, K: n + 1})
		if err != nil {
			t.Fatal(err)
		}
		own := 0
		for _, h := range res.Hits {
			if h.TicketID == id && h.Project == w.Project {
				own++
			}
		}
		if own != n || len(res.Hits) != n {
			report("lexical arm: ticket %s has %d chunks found by its id, want %d", id, own, n)
		}
	}
}

// lockedBuffer collects a child process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// benchEmbedder is the embedder benchmarks measure with: the default hashing
// embedder at its default dimension.
func benchEmbedder() retrieval.Embedder { return retrieval.NewHashing(retrieval.HashingConfig{}) }
