package pgvector

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	pgv "github.com/pgvector/pgvector-go"

	"github.com/clearance-dev/clearance/internal/bench"
	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

// TestExactAtScale measures, on one tenant of the bench's corpus with the given
// number of chunks (a 1M bench tenant has 250,000), what ranking its users'
// filters costs and returns: the exact heap scan (serial and parallel), the
// quantized first passes (halfvec with its error bound, binary with a
// re-ranked pool) and the store's own plan. Not a test: it runs only with
// CLEARANCE_PGVECTOR_EXACTSCALE set to the tenant's size in chunks. With
// CLEARANCE_PGVECTOR_EXACTSCALE_URL it keeps its data in that database and
// reuses it when it holds that many chunks:
//
//	CLEARANCE_PGVECTOR_EXACTSCALE=250000 go test -run ExactAtScale -v -timeout 2h ./retrieval/pgvector
func TestExactAtScale(t *testing.T) {
	chunks, _ := strconv.Atoi(os.Getenv("CLEARANCE_PGVECTOR_EXACTSCALE"))
	if chunks <= 0 {
		t.Skip("set CLEARANCE_PGVECTOR_EXACTSCALE to a tenant size to measure")
	}
	ctx := context.Background()
	const dim = 384
	emb := retrieval.NewHashing(retrieval.HashingConfig{Dim: dim})
	url := os.Getenv("CLEARANCE_PGVECTOR_EXACTSCALE_URL")
	if url == "" {
		url = testenv.DatabaseURL(t)
	}
	s, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: dim}, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := bench.DefaultOrgConfig(chunks)
	cfg.Tenants = 1
	org := bench.GenerateOrg(cfg)

	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Chunks != chunks {
		start := time.Now()
		if err := s.BeginBulk(ctx); err != nil {
			t.Fatal(err)
		}
		loadBenchTickets(ctx, t, s, emb, org)
		t.Logf("loaded %d chunks without the index in %.1f s", chunks, time.Since(start).Seconds())
		s.bulk.conn.Release()
		s.bulk = nil
	}
	for _, q := range []string{`VACUUM ANALYZE clearance_vector_chunks`, `VACUUM ANALYZE clearance_vector_tickets`} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	type query struct {
		bucket string
		f      retrieval.Filter
		vec    []float32
		exact  []retrieval.Hit
	}
	var queries []query
	texts := org.Queries(len(org.Viewers)*4, 7)
	vecs, err := emb.Embed(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	for rep := range 4 {
		for i, v := range org.Viewers {
			if v.Principal.Kind != "user" || v.Bucket < 0.05 {
				continue
			}
			f := viewerFilter(v)
			q := query{bucket: bench.BucketName(v.Bucket), f: f, vec: vecs[rep*len(org.Viewers)+i]}
			if q.exact, _, err = s.search(ctx, s.pool, retrieval.SearchRequest{Vector: q.vec, Filter: f, K: 10}, PlanExact); err != nil {
				t.Fatal(err)
			}
			queries = append(queries, q)
		}
	}
	buckets := []string{}
	for _, q := range queries {
		if !slices.Contains(buckets, q.bucket) {
			buckets = append(buckets, q.bucket)
		}
	}
	report := func(name string, run func(q query) ([]retrieval.Hit, error)) {
		for _, b := range buckets {
			var lat []time.Duration
			var recall float64
			n := 0
			for _, q := range queries {
				if q.bucket != b {
					continue
				}
				st := time.Now()
				hits, err := run(q)
				lat = append(lat, time.Since(st))
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				recall += recallAt(q.exact, hits)
				n++
			}
			slices.Sort(lat)
			t.Logf("| %s | %s | %d | %.3f | %.1f | %.1f |", name, b, n, recall/float64(n),
				float64(lat[len(lat)/2].Microseconds())/1000, float64(lat[len(lat)-1].Microseconds())/1000)
		}
	}
	// raw runs q (its $1 is the query vector, the filter's arguments follow)
	// after the settings and returns (ticket_id, ordinal) rows.
	raw := func(q query, settings, sql string) ([]retrieval.Hit, error) {
		cond, args := where(q.f, "ticket_id", 2)
		args = append([]any{pgv.NewVector(q.vec)}, args...)
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if settings != "" {
			if _, err := tx.Exec(ctx, settings); err != nil {
				return nil, err
			}
		}
		rows, err := tx.Query(ctx, fmt.Sprintf(sql, cond), args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var hits []retrieval.Hit
		for rows.Next() {
			var h retrieval.Hit
			var ord int32
			if err := rows.Scan(&h.TicketID, &ord); err != nil {
				return nil, err
			}
			h.Ordinal = int(ord)
			hits = append(hits, h)
		}
		return hits, rows.Err()
	}
	t.Logf("| option | visibility | queries | recall@10 | p50 ms | max ms |")
	for _, workers := range []int{0, 2} {
		s.cfg.ExactWorkers = workers
		report(fmt.Sprintf("store exact plan, %d workers", workers), func(q query) ([]retrieval.Hit, error) {
			h, _, err := s.search(ctx, s.pool, retrieval.SearchRequest{Vector: q.vec, Filter: q.f, K: 10}, PlanExact)
			return h, err
		})
	}
	// The same ranking with the planner's free choice of scan (seq scan when
	// the filter covers most of the table) against the btree-led bitmap scan
	// the store asks for.
	for _, seq := range []string{"on", "off"} {
		report(fmt.Sprintf("exact, enable_seqscan %s, 2 workers", seq), func(q query) ([]retrieval.Hit, error) {
			return raw(q, fmt.Sprintf(`SET LOCAL max_parallel_workers_per_gather = 2; SET LOCAL enable_seqscan = %s`, seq), `
SELECT c.ticket_id, c.ordinal FROM clearance_vector_chunks c WHERE %s
ORDER BY c.embedding <#> $1, c.ticket_id, c.ordinal LIMIT 10`)
		})
	}
	// Quantized first passes over the same rows (read from the heap: their
	// latency is the exact scan's plus the re-rank; what they show is recall).
	report("halfvec top-10, no re-rank", func(q query) ([]retrieval.Hit, error) {
		return raw(q, "", fmt.Sprintf(`SELECT c.ticket_id, c.ordinal FROM clearance_vector_chunks c WHERE %%s
ORDER BY c.embedding::halfvec(%d) <#> $1::halfvec(%d), c.ticket_id, c.ordinal LIMIT 10`, dim, dim))
	})
	for _, pool := range []int{100, 1000, 5000} {
		report(fmt.Sprintf("binary_quantize + hamming, pool %d re-ranked exactly", pool), func(q query) ([]retrieval.Hit, error) {
			return raw(q, "", fmt.Sprintf(`
WITH cand AS MATERIALIZED (SELECT c.ticket_id, c.ordinal, c.embedding FROM clearance_vector_chunks c WHERE %%s
  ORDER BY binary_quantize(c.embedding)::bit(%d) <~> binary_quantize($1::vector)::bit(%d) LIMIT %d)
SELECT ticket_id, ordinal FROM cand ORDER BY embedding <#> $1, ticket_id, ordinal LIMIT 10`, dim, dim, pool))
		})
	}
	if os.Getenv("CLEARANCE_PGVECTOR_EXACTSCALE_HNSW") == "off" {
		return
	}
	// HNSW with iterative scan and an exactly re-ranked candidate pool (the
	// store's index definition, built once here).
	st2 := time.Now()
	if _, err := s.pool.Exec(ctx, fmt.Sprintf(`SET maintenance_work_mem = '%dMB'; SET max_parallel_maintenance_workers = %d;
CREATE INDEX IF NOT EXISTS `+hnswIndex+` ON clearance_vector_chunks `+hnswIndexDef, s.cfg.BuildMemoryMB, s.cfg.BuildWorkers)); err != nil {
		t.Fatal(err)
	}
	t.Logf("HNSW build: %.1f s", time.Since(st2).Seconds())
	for _, p := range []struct{ pool, ef int }{{30, 200}, {1000, 1000}} {
		report(fmt.Sprintf("hnsw iterative scan, pool %d re-ranked, ef_search %d", p.pool, p.ef), func(q query) ([]retrieval.Hit, error) {
			return raw(q, fmt.Sprintf(`SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = %d;
SET LOCAL hnsw.max_scan_tuples = 100000; SET LOCAL enable_sort = off`, p.ef), fmt.Sprintf(`
WITH cand AS MATERIALIZED (SELECT c.ticket_id, c.ordinal, c.embedding FROM clearance_vector_chunks c WHERE %%s
  ORDER BY c.embedding <#> $1 LIMIT %d)
SELECT ticket_id, ordinal FROM cand ORDER BY embedding <#> $1, ticket_id, ordinal LIMIT 10`, p.pool))
		})
	}
}
