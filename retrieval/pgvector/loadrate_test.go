package pgvector

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/internal/bench"
	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

// TestLoadRate measures the store's bulk load as `clearance bench` drives it
// (64 tickets at a time, their upserts concurrent, embedded beforehand so only
// the store is timed). Not a test: it runs only with CLEARANCE_PGVECTOR_LOADRATE
// set to a corpus size in chunks. CLEARANCE_PGVECTOR_LOADRATE_SQL, statements
// separated by ';', runs before the load (to measure variants), and
// CLEARANCE_PGVECTOR_LOADRATE_BUILDS after it, each statement timed:
//
//	CLEARANCE_PGVECTOR_LOADRATE=100000 go test -run LoadRate -v ./retrieval/pgvector
func TestLoadRate(t *testing.T) {
	chunks, _ := strconv.Atoi(os.Getenv("CLEARANCE_PGVECTOR_LOADRATE"))
	if chunks <= 0 {
		t.Skip("set CLEARANCE_PGVECTOR_LOADRATE to a corpus size to measure")
	}
	ctx := context.Background()
	emb := retrieval.NewHashing(retrieval.HashingConfig{Dim: 384})
	url := testenv.DatabaseURL(t)
	s, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, q := range strings.Split(os.Getenv("CLEARANCE_PGVECTOR_LOADRATE_SQL"), ";") {
		if strings.TrimSpace(q) == "" {
			continue
		}
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	org := bench.GenerateOrg(bench.DefaultOrgConfig(chunks))
	all := make([][]retrieval.Chunk, len(org.Tickets))
	for i, tk := range org.Tickets {
		vecs, err := emb.Embed(ctx, tk.Chunks)
		if err != nil {
			t.Fatal(err)
		}
		all[i] = make([]retrieval.Chunk, len(tk.Chunks))
		for j := range vecs {
			all[i][j] = retrieval.Chunk{Ordinal: j, Text: tk.Chunks[j], Vector: vecs[j]}
		}
	}
	if err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	// CLEARANCE_PGVECTOR_LOADRATE_KEEPGIN=1: load with the lexical GIN index,
	// as bulk loads did before they dropped it.
	if os.Getenv("CLEARANCE_PGVECTOR_LOADRATE_KEEPGIN") == "1" {
		for i := range lexicalPartitions {
			if _, err := s.pool.Exec(ctx, `CREATE INDEX `+lexicalIndex(i)+` ON `+lexicalPartition(i)+` `+lexicalIndexDef); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	// CLEARANCE_PGVECTOR_LOADRATE_BATCH: tickets upserted at once (the
	// bench's 64 by default), each round waiting for the previous.
	batch, _ := strconv.Atoi(os.Getenv("CLEARANCE_PGVECTOR_LOADRATE_BATCH"))
	if batch <= 0 {
		batch = 64
	}
	for i := 0; i < len(org.Tickets); i += batch {
		hi := min(i+batch, len(org.Tickets))
		errs := make(chan error, hi-i)
		for j := i; j < hi; j++ {
			go func() { errs <- s.Upsert(ctx, org.Tickets[j].Ticket, all[j]) }()
		}
		for j := i; j < hi; j++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	load := time.Since(start)
	bstart := time.Now()
	if _, err := s.EndBulk(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lex int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM clearance_vector_lexical`).Scan(&lex); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d chunks (%d lexical rows) in %.2f s: %.0f chunks/s; end of bulk %.2f s",
		st.Chunks, lex, load.Seconds(), float64(st.Chunks)/load.Seconds(), time.Since(bstart).Seconds())
	// CLEARANCE_PGVECTOR_LOADRATE_BUILDS: statements timed after the load,
	// separated by ';' (index builds to compare).
	for _, q := range strings.Split(os.Getenv("CLEARANCE_PGVECTOR_LOADRATE_BUILDS"), ";") {
		if strings.TrimSpace(q) == "" {
			continue
		}
		start := time.Now()
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		t.Logf("%.2f s: %s", time.Since(start).Seconds(), strings.TrimSpace(q))
	}
}
