package pgvector_test

import (
	"context"
	"os"
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
// It takes about two minutes on two cores (deep pages walk much of the graph), so
// it runs only with CLEARANCE_PGVECTOR_HNSW=1.
func TestConformanceHNSW(t *testing.T) {
	if os.Getenv("CLEARANCE_PGVECTOR_HNSW") != "1" {
		t.Skip("set CLEARANCE_PGVECTOR_HNSW=1 to run the suite on the HNSW path (about 2 minutes)")
	}
	conformance(t, pgvector.PlanHNSW)
}
