package filter_test

import (
	"context"
	"slices"
	"testing"

	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
)

// TestExactStoreAnswerIsExact: the embedded store's answers are exact, and the
// response and the audit record say so.
func TestExactStoreAnswerIsExact(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	resp := search(t, pl, user("acme", "ada"), filter.Request{TopK: 2})
	if resp.Status != filter.Complete || !resp.Exact {
		t.Fatalf("embedded store: status %s exact %v, want complete and exact", resp.Status, resp.Exact)
	}
	rec, _ := f.log.Record(resp.AuditID)
	if !slices.Equal(rec.Plan.StorePlans, []string{retrieval.PlanExact}) || rec.Plan.Exact == nil || !*rec.Plan.Exact {
		t.Errorf("audit plan %+v, want store plan exact and exact true", rec.Plan)
	}
}

// TestApproximateStoreAnswerIsNeverComplete: pgvector walking HNSW (approximate)
// finds the right k here, but nothing proves it, so the answer must not claim
// complete (nor exhausted), says exact false, and the audit record names the
// plan. Before, the planner reported complete whatever the store's plan.
func TestApproximateStoreAnswerIsNeverComplete(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, plan := range []pgvector.Plan{pgvector.PlanHNSW, pgvector.PlanExact} {
		t.Run(plan.String(), func(t *testing.T) {
			store, err := pgvector.Open(ctx, pgvector.Config{DatabaseURL: testenv.DatabaseURL(t),
				Meta: retrieval.IndexMeta{Model: f.emb.Model(), Dim: f.emb.Dim()}, Plan: plan})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			for _, tk := range fixtureTickets {
				v, err := f.emb.Embed(ctx, []string{tk.Title + " " + tk.Body})
				if err != nil {
					t.Fatal(err)
				}
				if err := store.Upsert(ctx, tk, []retrieval.Chunk{{Text: tk.Body, Vector: v[0]}}); err != nil {
					t.Fatal(err)
				}
			}
			pl := f.planner(nil, store, nil)
			exact := plan == pgvector.PlanExact
			for _, tc := range []struct {
				k    int
				want filter.Status // on the exact plan
			}{{2, filter.Complete}, {10, filter.Exhausted}} {
				resp := search(t, pl, user("acme", "ada"), filter.Request{TopK: tc.k})
				want := tc.want
				if !exact {
					want = filter.Partial
				}
				if resp.Status != want || resp.Exact != exact {
					t.Errorf("plan %s, top %d: status %s exact %v, want %s exact %v", plan, tc.k, resp.Status, resp.Exact, want, exact)
				}
				rec, _ := f.log.Record(resp.AuditID)
				if !slices.Equal(rec.Plan.StorePlans, []string{plan.String()}) || rec.Plan.Exact == nil || *rec.Plan.Exact != exact {
					t.Errorf("plan %s, top %d: audit plan %+v", plan, tc.k, rec.Plan)
				}
				if rec.Status != string(want) {
					t.Errorf("plan %s, top %d: audit status %s, want %s", plan, tc.k, rec.Status, want)
				}
			}
		})
	}
}
