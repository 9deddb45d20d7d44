package pgvector

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

// TestVectorsStoredInline: the migrations keep vectors inline in the heap rows
// (PLAIN up to 1,536 dimensions, MAIN above, where a row of PLAIN floats could
// outgrow a page), so an exact scan never fetches them through TOAST; and a
// long chunk text is what moves out of line, not the vector.
func TestVectorsStoredInline(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		dim  int
		want string
	}{{384, "p"}, {1536, "p"}, {2000, "m"}} {
		url := testenv.DatabaseURL(t)
		s, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: "inline-test", Dim: tc.dim}})
		if err != nil {
			t.Fatal(err)
		}
		var storage string
		if err := s.pool.QueryRow(ctx, `SELECT attstorage::text FROM pg_attribute
WHERE attrelid = 'clearance_vector_chunks'::regclass AND attname = 'embedding'`).Scan(&storage); err != nil {
			t.Fatal(err)
		}
		if storage != tc.want {
			t.Errorf("dim %d: embedding storage %q, want %q", tc.dim, storage, tc.want)
		}
		if tc.dim == 384 {
			// 1,544 bytes of vector and 600 of incompressible text pass the
			// 2 kB TOAST threshold: under the default EXTENDED storage the
			// vector (the largest value) went out of line; now the text does.
			rng := rand.New(rand.NewPCG(1, 2))
			text := make([]byte, 600)
			for i := range text {
				text[i] = byte('a' + rng.IntN(26))
			}
			v := make([]float32, tc.dim)
			for i := range v {
				v[i] = rng.Float32() - 0.5
			}
			if err := s.Upsert(ctx, retrieval.Ticket{ID: "T-1", Tenant: "acme", Project: "web"},
				[]retrieval.Chunk{{Text: string(text), Vector: v}}); err != nil {
				t.Fatal(err)
			}
			var toast string
			if err := s.pool.QueryRow(ctx, `SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = 'clearance_vector_chunks'::regclass`).Scan(&toast); err != nil {
				t.Fatal(err)
			}
			var outOfLine int
			if err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(octet_length(chunk_data)), 0) FROM `+toast).Scan(&outOfLine); err != nil {
				t.Fatal(err)
			}
			if outOfLine >= 4*tc.dim {
				t.Errorf("%d bytes out of line: the vector was moved to TOAST", outOfLine)
			}
		}
		s.Close()
	}
}

// TestExactPlanParallel: the exact plan split over parallel workers (forced
// here by zero parallel costs) returns the reference ranking, ties by
// (ticket, ordinal) and pages included, and reports itself exact; and with the
// default threshold a filter of 51,000 chunks (above the old 50,000) is ranked
// exactly, not walked approximately.
func TestExactPlanParallel(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 51,000 chunks")
	}
	ctx := context.Background()
	base := testenv.DatabaseURL(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("options", "-c parallel_setup_cost=0 -c parallel_tuple_cost=0 -c min_parallel_table_scan_size=0 -c min_parallel_index_scan_size=0")
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads no "+" for a space
	const dim = 4
	s, err := Open(ctx, Config{DatabaseURL: u.String(), Meta: retrieval.IndexMeta{Model: "parallel-test", Dim: dim}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	type row struct {
		id, project string
		ord         int
		v           []float32
	}
	var rows []row
	if err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	const tickets = 25500 // 51,000 chunks, above the old 50,000 threshold
	errs := make(chan error, 1000)
	inflight := 0
	for i := range tickets {
		id, project := fmt.Sprintf("T-%05d", i), fmt.Sprintf("p%02d", rng.IntN(40))
		cs := make([]retrieval.Chunk, 2)
		for j := range cs {
			// A coarse grid: many exact ties, so the tie-break is tested.
			v := make([]float32, dim)
			for k := range v {
				v[k] = float32(rng.IntN(5)) - 2
			}
			cs[j] = retrieval.Chunk{Ordinal: j, Text: "x", Vector: v}
			rows = append(rows, row{id, project, j, v})
		}
		go func() { errs <- s.Upsert(ctx, retrieval.Ticket{ID: id, Tenant: "acme", Project: project}, cs) }()
		if inflight++; inflight == cap(errs) {
			for range inflight {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			inflight = 0
		}
	}
	for range inflight {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EndBulk(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE clearance_vector_chunks`); err != nil {
		t.Fatal(err)
	}
	var parallel bool
	if err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL max_parallel_workers_per_gather = 2`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN (FORMAT TEXT) SELECT ticket_id FROM clearance_vector_chunks c WHERE c.tenant = 'acme'
ORDER BY -(c.embedding <#> '[1,0,0,0]'), c.ticket_id, c.ordinal LIMIT 10`)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		parallel = strings.Contains(strings.Join(lines, "\n"), "Gather")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !parallel {
		t.Log("the planner chose no parallel plan for the whole tenant; checking the ranking all the same")
	}
	for _, tc := range []struct {
		f         retrieval.Filter
		k, offset int
	}{
		{retrieval.Filter{Tenant: "acme", AllProjects: true}, 10, 0},
		{retrieval.Filter{Tenant: "acme", AllProjects: true}, 25, 40},
		{retrieval.Filter{Tenant: "acme", Projects: []string{"p01", "p07", "p30"}, Tickets: []string{"T-00003", "T-29999"}}, 20, 5},
	} {
		qv := []float32{1, 0.5, -0.25, 0}
		res, err := s.Search(ctx, retrieval.SearchRequest{Vector: qv, Filter: tc.f, K: tc.k, Offset: tc.offset})
		if err != nil {
			t.Fatal(err)
		}
		if res.Plan != retrieval.PlanExact || !res.Exact {
			t.Errorf("filter %+v: plan %q exact %v, want the exact plan", tc.f, res.Plan, res.Exact)
		}
		var want []row
		for _, r := range rows {
			if tc.f.AllProjects || slices.Contains(tc.f.Projects, r.project) || slices.Contains(tc.f.Tickets, r.id) {
				want = append(want, r)
			}
		}
		dot := func(v []float32) float32 {
			var d float32
			for i := range v {
				d += v[i] * qv[i]
			}
			return d
		}
		slices.SortFunc(want, func(a, b row) int {
			return cmp.Or(cmp.Compare(dot(b.v), dot(a.v)), cmp.Compare(a.id, b.id), cmp.Compare(a.ord, b.ord))
		})
		want = want[min(tc.offset, len(want)):min(tc.offset+tc.k, len(want))]
		if len(res.Hits) != len(want) {
			t.Fatalf("filter %+v: %d hits, want %d", tc.f, len(res.Hits), len(want))
		}
		for i, h := range res.Hits {
			if h.TicketID != want[i].id || h.Ordinal != want[i].ord {
				t.Errorf("filter %+v k %d offset %d: hit %d is %s#%d, want %s#%d", tc.f, tc.k, tc.offset, i, h.TicketID, h.Ordinal, want[i].id, want[i].ord)
			}
		}
	}
}
