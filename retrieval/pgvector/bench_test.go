package pgvector

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	pgv "github.com/pgvector/pgvector-go"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

// Benchmark layout: benchRows chunks of benchDim dims, 4 chunks per ticket, in
// benchProjects projects of one tenant, so one project is 0.1% of the rows.
// Vectors lie around benchClusters random centres that have nothing to do with
// projects, the hard case for a filtered graph search.
const (
	benchRows     = 200_000
	benchDim      = 384
	benchChunks   = 4
	benchProjects = 1000
	benchClusters = 500
	benchQueries  = 20
)

// BenchmarkSearch measures the exact and HNSW paths and the plan the store picks,
// at filters allowing 0.1%, 1%, 10% and 100% of 200k rows, with recall@10 of each
// against the exact ranking. Loading and indexing take a few minutes; set
// CLEARANCE_PGVECTOR_BENCH_URL to a database to keep the data between runs.
//
//	go test -run '^$' -bench Search -benchtime 20x ./retrieval/pgvector/
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	url := os.Getenv("CLEARANCE_PGVECTOR_BENCH_URL")
	if url == "" {
		url = testenv.DatabaseURL(b)
	}
	meta := retrieval.IndexMeta{Model: "bench-clustered", Dim: benchDim}
	s, err := Open(ctx, Config{DatabaseURL: url, Meta: meta, Timeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	centres := make([][]float32, benchClusters)
	for i := range centres {
		centres[i] = randomUnit(rng, nil, 0)
	}
	if st, err := s.Stats(ctx); err != nil {
		b.Fatal(err)
	} else if st.Chunks != benchRows {
		start := time.Now()
		if err := benchLoad(ctx, s, rng, centres); err != nil {
			b.Fatal(err)
		}
		b.Logf("loaded and indexed %d rows in %v", benchRows, time.Since(start).Round(time.Second))
	}
	queries := make([][]float32, benchQueries)
	for i := range queries {
		queries[i] = randomUnit(rng, centres[rng.IntN(benchClusters)], 0.05)
	}
	for _, sel := range []struct {
		name     string
		projects int
	}{{"0.1%", 1}, {"1%", 10}, {"3%", 30}, {"5%", 50}, {"10%", 100}, {"100%", benchProjects}} {
		filters := make([]retrieval.Filter, benchQueries)
		for i := range filters {
			f := retrieval.Filter{Tenant: "acme", AllProjects: sel.projects == benchProjects}
			if !f.AllProjects {
				for _, p := range rng.Perm(benchProjects)[:sel.projects] {
					f.Projects = append(f.Projects, fmt.Sprintf("p%04d", p))
				}
			}
			filters[i] = f
		}
		exact := make([][]retrieval.Hit, benchQueries)
		for i := range exact {
			if exact[i], _, err = s.search(ctx, s.pool, retrieval.SearchRequest{Vector: queries[i], Filter: filters[i], K: 10}, PlanExact); err != nil {
				b.Fatal(err)
			}
		}
		for _, plan := range []Plan{PlanExact, PlanHNSW, PlanAuto} {
			b.Run(sel.name+"/"+plan.String(), func(b *testing.B) {
				var lat []time.Duration
				var recall float64
				var chosen Plan
				i := 0
				for b.Loop() {
					q := i % benchQueries
					i++
					start := time.Now()
					hits, used, err := s.search(ctx, s.pool, retrieval.SearchRequest{Vector: queries[q], Filter: filters[q], K: 10}, plan)
					lat = append(lat, time.Since(start))
					if err != nil {
						b.Fatal(err)
					}
					recall += recallAt(exact[q], hits)
					chosen = used
				}
				slices.Sort(lat)
				b.ReportMetric(recall/float64(i), "recall@10")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
				if plan == PlanAuto {
					b.Logf("%s: auto chose %s", sel.name, chosen)
				}
			})
		}
	}
}

func recallAt(want, got []retrieval.Hit) float64 {
	if len(want) == 0 {
		return 1
	}
	n := 0
	for _, w := range want {
		for _, g := range got {
			if g.TicketID == w.TicketID && g.Ordinal == w.Ordinal {
				n++
				break
			}
		}
	}
	return float64(n) / float64(len(want))
}

// randomUnit returns a random unit vector, or one around centre with per-component
// noise sigma.
func randomUnit(rng *rand.Rand, centre []float32, sigma float64) []float32 {
	v := make([]float32, benchDim)
	var n float64
	for i := range v {
		x := rng.NormFloat64()
		if centre != nil {
			x = float64(centre[i]) + sigma*x
		}
		v[i] = float32(x)
		n += x * x
	}
	inv := float32(1 / math.Sqrt(n))
	for i := range v {
		v[i] *= inv
	}
	return v
}

// benchLoad fills the tables with COPY and builds the HNSW index afterwards,
// which is many times faster than inserting into an indexed table.
func benchLoad(ctx context.Context, s *Store, rng *rand.Rand, centres [][]float32) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	for _, q := range []string{
		`TRUNCATE clearance_vector_tickets CASCADE`,
		`DROP INDEX IF EXISTS ` + hnswIndex,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	tickets := benchRows / benchChunks
	now := time.Now().UTC()
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"clearance_vector_tickets"},
		[]string{"id", "tenant", "project", "title", "body", "updated_at", "content_hash", "chunks"},
		pgx.CopyFromSlice(tickets, func(i int) ([]any, error) {
			return []any{fmt.Sprintf("T%06d", i), "acme", fmt.Sprintf("p%04d", i%benchProjects), "t", "", now, "", int32(benchChunks)}, nil
		})); err != nil {
		return err
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"clearance_vector_chunks"},
		[]string{"ticket_id", "ordinal", "tenant", "project", "text", "embedding"},
		pgx.CopyFromSlice(benchRows, func(i int) ([]any, error) {
			t := i / benchChunks
			v := randomUnit(rng, centres[rng.IntN(len(centres))], 0.05)
			return []any{fmt.Sprintf("T%06d", t), int32(i % benchChunks), "acme", fmt.Sprintf("p%04d", t%benchProjects), "", pgv.NewVector(v)}, nil
		})); err != nil {
		return err
	}
	for _, q := range []string{
		`SET maintenance_work_mem = '1GB'`,
		`SET max_parallel_maintenance_workers = 1`,
		`CREATE INDEX ` + hnswIndex + ` ON clearance_vector_chunks USING hnsw (embedding vector_ip_ops)`,
		`VACUUM ANALYZE clearance_vector_chunks`,
		`VACUUM ANALYZE clearance_vector_tickets`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}
