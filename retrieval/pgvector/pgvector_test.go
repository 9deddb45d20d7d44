package pgvector_test

import (
	"context"
	"testing"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
	"github.com/clearance-dev/clearance/retrieval/storetest"
)

func open(t *testing.T, url string, meta retrieval.IndexMeta, plan pgvector.Plan) (*pgvector.Store, error) {
	return pgvector.Open(context.Background(), pgvector.Config{DatabaseURL: url, Meta: meta, Plan: plan})
}

func conformance(t *testing.T, plan pgvector.Plan) {
	urls := map[retrieval.Store]string{}
	opener := func(t *testing.T, meta retrieval.IndexMeta) retrieval.Store {
		url := testenv.DatabaseURL(t)
		s, err := open(t, url, meta, plan)
		if err != nil {
			t.Fatal(err)
		}
		urls[s] = url
		return s
	}
	storetest.Run(t, opener, storetest.Options{
		Reopen: func(t *testing.T, closed retrieval.Store, meta retrieval.IndexMeta) (retrieval.Store, error) {
			s, err := open(t, urls[closed], meta, plan)
			if err != nil {
				return nil, err
			}
			urls[s] = urls[closed]
			return s, nil
		},
	})
}

// TestConformance runs the suite with the store choosing its plan (the suite's
// data is small, so that is the exact path).
func TestConformance(t *testing.T) { conformance(t, pgvector.PlanAuto) }

// TestConformanceHNSW forces the HNSW path. On the suite's few hundred rows the
// graph with ef_search 200 finds every neighbour, so the ranking must be exact too;
// this checks the iterative-scan query's filters, re-sort, tie-break and paging.
// (pgvector < 0.8.3 can corrupt HNSW indexes when vacuum meets concurrent writes;
// each subtest's database lives for well under autovacuum's one-minute nap.)
func TestConformanceHNSW(t *testing.T) { conformance(t, pgvector.PlanHNSW) }
