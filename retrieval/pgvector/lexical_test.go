package pgvector

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// TestLexicalBackfill: chunks without lexical columns (rows from before the
// lexical migration, or written by an older binary during a rolling upgrade,
// whose ticket rows keep a stale total length) are tokenized by the next
// lexical search before it answers, across several backfill batches, and the
// answer equals the one over rows written with their tokens.
func TestLexicalBackfill(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	s, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: "lex-backfill", Dim: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	words := []string{"login", "timeout", "replica", "lag", "payment", "refund", "crash"}
	n := 2*fillBatch + 50
	for i := range n {
		id := fmt.Sprintf("T-%04d", i)
		tk := retrieval.Ticket{ID: id, Tenant: "acme", Project: fmt.Sprintf("p%d", i%3), Title: words[i%len(words)] + " issue"}
		var chunks []retrieval.Chunk
		for o := range 1 + i%2 {
			text := words[(i+o)%len(words)] + " " + words[(i*3+o)%len(words)]
			if i == 77 {
				text += " failed with ERR_CONN_RESET"
			}
			chunks = append(chunks, retrieval.Chunk{Ordinal: o, Text: text, Vector: []float32{1, 0, 0, 0}})
		}
		if err := s.Upsert(ctx, tk, chunks); err != nil {
			t.Fatal(err)
		}
	}
	type query struct {
		q string
		f retrieval.Filter
	}
	queries := []query{
		{"login timeout", retrieval.Filter{Tenant: "acme", AllProjects: true}},
		{"err_conn_reset crash", retrieval.Filter{Tenant: "acme", Projects: []string{"p1"}, Tickets: []string{"T-0077"}}},
		{"refund lag", retrieval.Filter{Tenant: "acme", Projects: []string{"p0", "p2"}}},
	}
	search := func() [][]retrieval.Hit {
		var out [][]retrieval.Hit
		for _, q := range queries {
			res, err := s.SearchLexical(ctx, retrieval.LexicalRequest{Terms: lexical.Terms(q.q), Filter: q.f, K: 20})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Hits) == 0 {
				t.Fatalf("%q: no hits", q.q)
			}
			out = append(out, res.Hits)
		}
		return out
	}
	want := search()

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
UPDATE clearance_vector_chunks SET lex_terms = NULL, lex_tfs = NULL, lex_len = NULL;
UPDATE clearance_vector_tickets SET lex_len = NULL WHERE id < 'T-0200';
UPDATE clearance_vector_tickets SET lex_len = 999 WHERE id >= 'T-0200'`); err != nil {
		t.Fatal(err)
	}
	got := search()
	for i := range queries {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("%q after backfill:\n got %v\nwant %v", queries[i].q, got[i], want[i])
		}
	}
	var missing, stale int
	if err := conn.QueryRow(ctx, `SELECT
  (SELECT count(*) FROM clearance_vector_chunks WHERE lex_len IS NULL OR lex_terms IS NULL OR lex_tfs IS NULL),
  (SELECT count(*) FROM clearance_vector_tickets t WHERE lex_len IS DISTINCT FROM
     (SELECT sum(lex_len) FROM clearance_vector_chunks c WHERE c.ticket_id = t.id))`).Scan(&missing, &stale); err != nil {
		t.Fatal(err)
	}
	if missing != 0 || stale != 0 {
		t.Fatalf("after backfill: %d chunks without tokens, %d tickets with a wrong total length", missing, stale)
	}
}
