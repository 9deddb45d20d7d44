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

// TestSearchOptions measures, side by side on the bench's corpus (hashing
// embedder, 384 dims) and its users' filters, the ways to rank filters above
// ExactThreshold: the exact plan, the HNSW iterative scan with the store's
// candidate pool and with larger re-ranked pools, a halfvec index with an exact
// re-rank, and HNSW build parameters. It prints recall@10 against the exact
// ranking and latency per option. Not a test: it runs only with
// CLEARANCE_PGVECTOR_OPTIONS set to the corpus size in chunks (it takes minutes):
//
//	CLEARANCE_PGVECTOR_OPTIONS=100000 go test -run SearchOptions -v -timeout 2h ./retrieval/pgvector
func TestSearchOptions(t *testing.T) {
	chunks, _ := strconv.Atoi(os.Getenv("CLEARANCE_PGVECTOR_OPTIONS"))
	if chunks <= 0 {
		t.Skip("set CLEARANCE_PGVECTOR_OPTIONS to a corpus size to measure")
	}
	ctx := context.Background()
	const dim = 384
	emb := retrieval.NewHashing(retrieval.HashingConfig{Dim: dim})
	s, err := Open(ctx, Config{DatabaseURL: testenv.DatabaseURL(t), Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: dim}, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := bench.DefaultOrgConfig(chunks)
	cfg.Seed = 42
	org := bench.GenerateOrg(cfg)

	start := time.Now()
	if err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	loadBenchTickets(ctx, t, s, emb, org)
	t.Logf("loaded %d chunks without the index in %.1f s", chunks, time.Since(start).Seconds())
	// The bulk lock is kept: this test builds the variants itself.
	conn := s.bulk.conn
	for _, q := range []string{`VACUUM ANALYZE clearance_vector_chunks`, `VACUUM ANALYZE clearance_vector_tickets`,
		fmt.Sprintf(`SET maintenance_work_mem = '%dMB'`, s.cfg.BuildMemoryMB),
		fmt.Sprintf(`SET max_parallel_maintenance_workers = %d`, s.cfg.BuildWorkers)} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	// Users' filters (agents see subsets of the same), above 1% only: the
	// smaller ones are far below any threshold.
	type query struct {
		bucket string
		f      retrieval.Filter
		vec    []float32
		exact  []retrieval.Hit
		exactT time.Duration
	}
	var queries []query
	texts := org.Queries(len(org.Viewers), 7)
	vecs, err := emb.Embed(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range org.Viewers {
		if v.Principal.Kind != "user" || v.Bucket < 0.05 {
			continue
		}
		f := viewerFilter(v)
		q := query{bucket: bench.BucketName(v.Bucket), f: f, vec: vecs[i]}
		st := time.Now()
		if q.exact, _, err = s.search(ctx, s.pool, retrieval.SearchRequest{Vector: q.vec, Filter: f, K: 10}, PlanExact); err != nil {
			t.Fatal(err)
		}
		q.exactT = time.Since(st)
		queries = append(queries, q)
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
	t.Logf("| option | visibility | queries | recall@10 | p50 ms | max ms |")
	report("exact", func(q query) ([]retrieval.Hit, error) {
		h, _, err := s.search(ctx, s.pool, retrieval.SearchRequest{Vector: q.vec, Filter: q.f, K: 10}, PlanExact)
		return h, err
	})

	// hnswQuery walks the index on expr with iterative scan, takes pool
	// candidates and re-ranks them by exact distance.
	hnswQuery := func(q query, expr, cast string, pool, ef int) ([]retrieval.Hit, error) {
		cond, args := where(q.f, "ticket_id", 2)
		args = append([]any{pgv.NewVector(q.vec)}, args...)
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL hnsw.iterative_scan = relaxed_order;
SET LOCAL hnsw.ef_search = %d; SET LOCAL hnsw.max_scan_tuples = %d; SET LOCAL enable_sort = off`, min(ef, 1000), 100000)); err != nil {
			return nil, err
		}
		rows, err := tx.Query(ctx, fmt.Sprintf(`
WITH cand AS MATERIALIZED (
  SELECT c.ticket_id, c.ordinal, c.embedding FROM clearance_vector_chunks c WHERE %s
  ORDER BY %s <#> $1%s LIMIT %d)
SELECT ticket_id, ordinal FROM cand ORDER BY embedding <#> $1, ticket_id, ordinal LIMIT 10`, cond, expr, cast, pool), args...)
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
	build := func(name, ddl string) {
		_, _ = conn.Exec(ctx, `DROP INDEX IF EXISTS `+hnswIndex)
		st := time.Now()
		if _, err := conn.Exec(ctx, `CREATE INDEX `+hnswIndex+` ON clearance_vector_chunks `+ddl); err != nil {
			t.Fatal(err)
		}
		var size string
		_ = conn.QueryRow(ctx, `SELECT pg_size_pretty(pg_relation_size($1::regclass))`, hnswIndex).Scan(&size)
		t.Logf("| build %s | %.1f s | %s |", name, time.Since(st).Seconds(), size)
	}
	variants := []struct{ name, ddl, expr, cast string }{
		{"vector m=16 ef_construction=64", `USING hnsw (embedding vector_ip_ops)`, "c.embedding", ""},
		{"halfvec m=16 ef_construction=64", fmt.Sprintf(`USING hnsw ((embedding::halfvec(%d)) halfvec_ip_ops)`, dim), fmt.Sprintf("(c.embedding::halfvec(%d))", dim), fmt.Sprintf("::halfvec(%d)", dim)},
		{"vector m=32 ef_construction=128", `USING hnsw (embedding vector_ip_ops) WITH (m = 32, ef_construction = 128)`, "c.embedding", ""},
	}
	for _, v := range variants {
		build(v.name, v.ddl)
		for _, p := range []struct{ pool, ef int }{{30, 200}, {100, 200}, {400, 400}, {1000, 1000}} {
			report(fmt.Sprintf("%s, pool %d, ef_search %d", v.name, p.pool, p.ef), func(q query) ([]retrieval.Hit, error) {
				return hnswQuery(q, v.expr, v.cast, p.pool, p.ef)
			})
		}
	}
}
