package pgvector

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

// TestTakeBatchKeepsOrder: a batch is a prefix of the queue with distinct ids
// within the chunk budget, so a later upsert of an id never joins or overtakes
// an earlier one.
func TestTakeBatchKeepsOrder(t *testing.T) {
	mk := func(id string, chunks int) *pending {
		return &pending{t: retrieval.Ticket{ID: id}, chunks: make([]retrieval.Chunk, chunks)}
	}
	ids := func(ps []*pending) string {
		s := ""
		for _, p := range ps {
			s += fmt.Sprintf("%s%d ", p.t.ID, len(p.chunks))
		}
		return s
	}
	for _, tc := range []struct {
		q           []*pending
		max         int
		batch, rest string
	}{
		{[]*pending{mk("a", 1), mk("b", 1), mk("a", 2), mk("c", 1)}, 10, "a1 b1 ", "a2 c1 "},
		{[]*pending{mk("x", 1), mk("a", 9), mk("b", 1)}, 5, "x1 ", "a9 b1 "},
		{[]*pending{mk("big", 9), mk("b", 1)}, 5, "big9 ", "b1 "},
		{nil, 5, "", ""},
	} {
		q := tc.q
		batch := takeBatch(&q, tc.max)
		if ids(batch) != tc.batch || ids(q) != tc.rest {
			t.Errorf("takeBatch: batch %q rest %q, want %q and %q", ids(batch), ids(q), tc.batch, tc.rest)
		}
	}
}

// TestConcurrentUpsertsShareTransactions: concurrent upserts are written in
// shared transactions, every one is confirmed only once written, and a ticket
// PostgreSQL refuses (a NUL byte in its text) fails alone, not its batch.
func TestConcurrentUpsertsShareTransactions(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, Config{DatabaseURL: testenv.DatabaseURL(t), Meta: retrieval.IndexMeta{Model: "group-test", Dim: 4}, Writers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 64
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := "ok"
			if i == 17 {
				body = "bad\x00byte"
			}
			tk := retrieval.Ticket{ID: fmt.Sprintf("T%02d", i), Tenant: "acme", Project: "p", Body: body}
			errs[i] = s.Upsert(ctx, tk, []retrieval.Chunk{{Text: body, Vector: []float32{1, 0, 0, 0}}, {Ordinal: 1, Text: "x", Vector: []float32{0, 1, 0, 0}}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 17) {
			t.Errorf("upsert %d: %v", i, err)
		}
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tickets != n-1 || st.Chunks != 2*(n-1) {
		t.Errorf("stats %+v, want %d tickets with 2 chunks each", st, n-1)
	}
	var txs int
	if err := s.pool.QueryRow(ctx, `SELECT count(DISTINCT xmin::text) FROM clearance_vector_tickets`).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	if txs >= n-1 {
		t.Errorf("%d tickets written by %d transactions: no grouping", n-1, txs)
	}
	t.Logf("%d tickets in %d transactions", n-1, txs)
}

// TestFailedBatchRetriesEachTicket: a batch PostgreSQL refuses is written again
// one ticket per transaction, so only the bad ticket fails.
func TestFailedBatchRetriesEachTicket(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, Config{DatabaseURL: testenv.DatabaseURL(t), Meta: retrieval.IndexMeta{Model: "group-test", Dim: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ps []*pending
	for i, body := range []string{"a", "bad\x00", "c"} {
		ps = append(ps, newPending(retrieval.Ticket{ID: fmt.Sprint("T", i), Tenant: "acme", Project: "p", Body: body},
			[]retrieval.Chunk{{Text: body, Vector: []float32{1, 0, 0, 0}}}))
	}
	s.group.queue, s.group.writers = slices.Clone(ps), 1
	s.drain(ctx) // one batch of three, refused, then three alone
	for i, p := range ps {
		if err := <-p.done; (err != nil) != (i == 1) {
			t.Errorf("ticket %d: %v", i, err)
		}
	}
	if st, err := s.Stats(ctx); err != nil || st.Tickets != 2 {
		t.Errorf("stats %+v %v, want 2 tickets", st, err)
	}
}
