package telemetry_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/clearance-dev/clearance/internal/telemetry"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
)

// A store with a lexical index keeps it through the wrapper (or a hybrid
// search on a served planner would answer 501), and a store without one does
// not gain it.
func TestStoreKeepsLexicalSearch(t *testing.T) {
	ctx := context.Background()
	s, err := storeembedded.Open(ctx, storeembedded.Config{Meta: retrieval.IndexMeta{Model: "m", Dim: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Upsert(ctx, retrieval.Ticket{ID: "T-1", Tenant: "acme", Project: "p"}, []retrieval.Chunk{{Text: "ERR_CONN_RESET", Vector: []float32{1, 0}}}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	w := telemetry.New(reg, nil, "test").Store(s)
	ls, ok := w.(retrieval.LexicalSearcher)
	if !ok {
		t.Fatal("the wrapped embedded store lost SearchLexical")
	}
	res, err := ls.SearchLexical(ctx, retrieval.LexicalRequest{Terms: []string{"err_conn_reset"}, Filter: retrieval.Filter{Tenant: "acme", AllProjects: true}, K: 5})
	if err != nil || len(res.Hits) != 1 || res.Plan != retrieval.PlanBM25 {
		t.Fatalf("SearchLexical: %+v, %v", res, err)
	}
	if n, err := testutil.GatherAndCount(reg, "clearance_store_searches_total"); err != nil || n == 0 {
		t.Fatalf("no store search counted (%d, %v)", n, err)
	}
	if _, ok := telemetry.New(prometheus.NewRegistry(), nil, "test").Store(struct{ retrieval.Store }{s}).(retrieval.LexicalSearcher); ok {
		t.Fatal("a store without SearchLexical gained it")
	}
}
