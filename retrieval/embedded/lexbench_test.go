package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// The lexical benchmarks build a store whose chunks carry ticket-like text
// (Zipf-distributed words from a 2,000-word vocabulary, an error code, a
// customer and a unique host name per ticket) and tiny vectors, so the
// lexical arm dominates the memory and the build time they report:
//
//	go test ./retrieval/embedded -run '^$' -bench SearchLexical -benchmem [-large]
var lexBenchStores sync.Map

const lexBenchDim = 8

func lexBenchVocab() []string {
	v := make([]string, 0, 2000)
	for i := range 2000 {
		v = append(v, fmt.Sprintf("w%dq%s", i, strings.Repeat("x", i%7)))
	}
	return v
}

func lexBenchStore(b *testing.B, rows int) *Store {
	if s, ok := lexBenchStores.Load(rows); ok {
		return s.(*Store)
	}
	s, err := Open(context.Background(), Config{Meta: retrieval.IndexMeta{Model: "bench", Dim: lexBenchDim}})
	if err != nil {
		b.Fatal(err)
	}
	fillLexBench(b, s, rows)
	lexBenchStores.Store(rows, s)
	return s
}

// fillLexBench upserts rows chunks of ticket-like text into s.
func fillLexBench(b *testing.B, s *Store, rows int) {
	vocab := lexBenchVocab()
	rng := rand.New(rand.NewPCG(5, uint64(rows)))
	zipf := rand.NewZipf(rng, 1.1, 2, uint64(len(vocab)-1))
	cs := make([]retrieval.Chunk, benchChunks)
	for i := range cs {
		cs[i] = retrieval.Chunk{Ordinal: i, Vector: make([]float32, lexBenchDim)}
		cs[i].Vector[0] = 1
	}
	var sb strings.Builder
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i := range rows / benchChunks {
		for k := range cs {
			sb.Reset()
			for w := range 60 {
				if w > 0 {
					sb.WriteByte(' ')
				}
				if rng.IntN(3) == 0 {
					sb.WriteString(vocab[rng.IntN(len(vocab))])
				} else {
					sb.WriteString(vocab[zipf.Uint64()])
				}
			}
			fmt.Fprintf(&sb, " ERR_%d cust%d host-%d.prod", rng.IntN(5000), rng.IntN(2000), i)
			cs[k].Text = sb.String()
		}
		tk := retrieval.Ticket{ID: fmt.Sprintf("T%07d", i), Tenant: "acme", Project: fmt.Sprintf("p%04d", i%benchProjects),
			Title: vocab[zipf.Uint64()] + " " + vocab[rng.IntN(len(vocab))]}
		if err := s.Upsert(context.Background(), tk, cs); err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	var posts, arena, arenaCap, terms int
	for _, ps := range s.ix.tenants {
		for _, p := range ps {
			for _, tl := range p.lex.terms {
				posts += int(tl.n)
			}
			terms += len(p.lex.terms)
			arena += len(p.lex.arena)
			arenaCap += cap(p.lex.arena)
		}
	}
	b.Logf("built %d rows in %v (%.0f chunks/s), live heap %d MiB; %d postings of %d (partition, term) pairs in arenas of %d (capacity %d), %d distinct terms",
		rows, el, float64(rows)/el.Seconds(), (after.HeapAlloc-before.HeapAlloc)>>20, posts, terms, arena, arenaCap, len(s.ix.dict.ids))
}

// BenchmarkReopenLexical opens a store of ticket-like text from a snapshot
// and from its log: either way every chunk is analyzed again for the lexical
// arm.
func BenchmarkReopenLexical(b *testing.B) {
	rows := 100_000
	if *benchRows > 0 {
		rows = *benchRows
	}
	for _, from := range []string{"snapshot", "log"} {
		b.Run("from="+from, func(b *testing.B) {
			cfg := Config{DataDir: b.TempDir(), Meta: retrieval.IndexMeta{Model: "bench", Dim: lexBenchDim}, NoSync: true, CompactBytes: 1 << 40}
			s, err := Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			fillLexBench(b, s, rows)
			if from == "snapshot" {
				if err := s.Compact(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				s, err := Open(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
		})
	}
}

// BenchmarkSearchLexical measures BM25 searches under filters of 1%, 10% and
// 100% of the rows, for a rare term, two common words, and a mixed query, for
// the top 10 (a hybrid search's default depth) and 50, with the partitions'
// score-bound pruning on and off. "rare" is a host name
// whose parts host and prod every chunk holds, like a ticket key's prefix.
func BenchmarkSearchLexical(b *testing.B) {
	sizes := []int{100_000}
	if *large {
		sizes = append(sizes, 1_000_000)
	}
	if *benchRows > 0 {
		sizes = []int{*benchRows}
	}
	vocab := lexBenchVocab()
	queries := map[string]string{
		"rare":   "host-1234.prod",
		"common": vocab[2] + " " + vocab[5],
		"mixed":  "ERR_42 " + vocab[3] + " " + vocab[900] + " cust17",
	}
	for _, rows := range sizes {
		for _, pct := range []float64{1, 10, 100} {
			for _, qn := range []string{"rare", "common", "mixed"} {
				for _, k := range []int{10, 50} {
					for _, prune := range []bool{true, false} {
						b.Run(fmt.Sprintf("rows=%s/filter=%g%%/q=%s/k=%d/prune=%v", short(rows), pct, qn, k, prune), func(b *testing.B) {
							s := lexBenchStore(b, rows)
							terms, flt := lexical.QueryTerms(lexical.Terms(queries[qn])), benchFilter(pct)
							b.ResetTimer()
							for b.Loop() {
								// SearchLexical's work, with pruning on or off.
								s.mu.RLock()
								s.ix.searchLexical(terms, flt, k, &s.lexScratch, prune)
								s.mu.RUnlock()
							}
						})
					}
				}
			}
		}
	}
}
