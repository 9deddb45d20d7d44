package pgvector

import (
	"context"
	"fmt"
	"testing"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

// TestAutoPlanFollowsAllowedChunkCount: with ExactThreshold 10, filters allowing
// at most 10 chunks run exactly and larger ones on HNSW, including when many
// tickets without chunks make the capped ticket count inconclusive; the search
// result names the plan and is exact only on the exact one.
func TestAutoPlanFollowsAllowedChunkCount(t *testing.T) {
	ctx := context.Background()
	meta := retrieval.IndexMeta{Model: "plan-test", Dim: 4}
	s, err := Open(ctx, Config{DatabaseURL: testenv.DatabaseURL(t), Meta: meta, ExactThreshold: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	up := func(id, project string, chunks int) {
		cs := make([]retrieval.Chunk, chunks)
		for i := range cs {
			cs[i] = retrieval.Chunk{Ordinal: i, Text: "x", Vector: []float32{1, float32(i), 0, 0}}
		}
		if err := s.Upsert(ctx, retrieval.Ticket{ID: id, Tenant: "acme", Project: project}, cs); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		up(fmt.Sprintf("small-%d", i), "small", 2) // 8 chunks
		up(fmt.Sprintf("big-%d", i), "big", 3)     // 12 chunks
	}
	for i := range 12 {
		up(fmt.Sprintf("empty-%02d", i), "empties", 0)
	}
	up("one", "empties", 1)
	for _, tc := range []struct {
		f    retrieval.Filter
		want Plan
	}{
		{retrieval.Filter{Tenant: "acme", Projects: []string{"small"}}, PlanExact},
		{retrieval.Filter{Tenant: "acme", Projects: []string{"big"}}, PlanHNSW},
		{retrieval.Filter{Tenant: "acme", Projects: []string{"small"}, Tickets: []string{"big-0"}}, planFor(11)},
		{retrieval.Filter{Tenant: "acme", Projects: []string{"empties"}}, PlanExact},
		{retrieval.Filter{Tenant: "acme", AllProjects: true}, PlanHNSW},
	} {
		res, err := s.Search(ctx, retrieval.SearchRequest{Vector: []float32{1, 0, 0, 0}, Filter: tc.f, K: 3})
		if err != nil {
			t.Fatal(err)
		}
		hits := res.Hits
		// The plan that ran is reported, and only the exact one claims exactness.
		if res.Plan != tc.want.String() || res.Exact != (tc.want == PlanExact) {
			t.Errorf("filter %+v: plan %s exact %v, want %s", tc.f, res.Plan, res.Exact, tc.want)
		}
		n, err := s.Count(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != min(3, n) {
			t.Errorf("filter %+v: %d hits, %d allowed chunks", tc.f, len(hits), n)
		}
	}
}

// planFor is the plan for n allowed chunks under threshold 10.
func planFor(n int) Plan {
	if n <= 10 {
		return PlanExact
	}
	return PlanHNSW
}
