package pgvector

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// BenchmarkLexical compares a lexical search with an exact vector search on
// lexBenchChunks chunks of one tenant in 20 projects (a project is 5% of the
// rows), for a rare term (a ticket key) and two common words, under one
// project and the whole tenant. Chunk texts are 30 words drawn with a skewed
// (Zipf) law from a 5,000-word vocabulary, so common words hold in most rows.
//
//	./scripts/with-test-servers.sh go test -run '^$' -bench Lexical -benchtime 20x ./retrieval/pgvector/
//
// CLEARANCE_LEXBENCH_CHUNKS sets another number of chunks.
func BenchmarkLexical(b *testing.B) {
	const projects = 20
	lexBenchChunks := 50_000
	if n, err := strconv.Atoi(os.Getenv("CLEARANCE_LEXBENCH_CHUNKS")); err == nil && n > 0 {
		lexBenchChunks = n
	}
	ctx := context.Background()
	s, err := Open(ctx, Config{DatabaseURL: testenv.DatabaseURL(b), Meta: retrieval.IndexMeta{Model: "bench-lexical", Dim: benchDim}, Timeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	vocab := make([]string, 5000)
	for i := range vocab {
		vocab[i] = fmt.Sprintf("w%dx", i)
	}
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(len(vocab)-1))
	start := time.Now()
	if err := s.BeginBulk(ctx); err != nil {
		b.Fatal(err)
	}
	type job struct {
		t retrieval.Ticket
		c []retrieval.Chunk
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for j := range jobs {
				if err := s.Upsert(ctx, j.t, j.c); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range lexBenchChunks / 2 {
		id := fmt.Sprintf("BT-%d", i)
		tk := retrieval.Ticket{ID: id, Tenant: "acme", Project: fmt.Sprintf("p%02d", i%projects), Title: vocab[zipf.Uint64()] + " " + vocab[zipf.Uint64()]}
		var cs []retrieval.Chunk
		for o := range 2 {
			ws := make([]string, 30)
			for k := range ws {
				ws[k] = vocab[zipf.Uint64()]
			}
			cs = append(cs, retrieval.Chunk{Ordinal: o, Text: strings.Join(ws, " "), Vector: randomUnit(rng, nil, 0)})
		}
		select {
		case jobs <- job{tk, cs}:
		case err := <-errs:
			b.Fatal(err)
		}
	}
	close(jobs)
	wg.Wait()
	if _, err := s.EndBulk(ctx); err != nil {
		b.Fatal(err)
	}
	for _, t := range []string{"clearance_vector_chunks", "clearance_vector_tickets"} {
		if _, err := s.pool.Exec(ctx, `VACUUM ANALYZE `+t); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d chunks in %v", lexBenchChunks, time.Since(start).Round(time.Second))
	query := randomUnit(rng, nil, 0)
	for _, flt := range []struct {
		name string
		f    retrieval.Filter
	}{{"5%", retrieval.Filter{Tenant: "acme", Projects: []string{"p03"}}}, {"100%", retrieval.Filter{Tenant: "acme", AllProjects: true}}} {
		for _, q := range []struct{ name, text string }{{"key", "BT-1203"}, {"common", vocab[1] + " " + vocab[2]}} {
			b.Run(flt.name+"/lexical-"+q.name, func(b *testing.B) {
				lat := timeLoop(b, func() error {
					_, err := s.SearchLexical(ctx, retrieval.LexicalRequest{Terms: lexical.Terms(q.text), Filter: flt.f, K: 10})
					return err
				})
				b.ReportMetric(lat, "p50-ms")
			})
		}
		b.Run(flt.name+"/vector-exact", func(b *testing.B) {
			lat := timeLoop(b, func() error {
				_, _, err := s.search(ctx, s.pool, retrieval.SearchRequest{Vector: query, Filter: flt.f, K: 10}, PlanExact)
				return err
			})
			b.ReportMetric(lat, "p50-ms")
		})
	}
}

// timeLoop runs fn b.N times and returns its median latency in milliseconds.
func timeLoop(b *testing.B, fn func() error) float64 {
	var lat []time.Duration
	for b.Loop() {
		t := time.Now()
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	return float64(lat[len(lat)/2].Microseconds()) / 1000
}
