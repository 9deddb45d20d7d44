package searchbench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/audit/filelog"
	"github.com/clearance-dev/clearance/authz"
	fgaembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/fgafile"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/testdata"
)

var queries = []string{
	"checkout latency spike after deploy", "password reset email not delivered", "invoice numbering gap",
	"API keys of offboarded contractors", "audit log for account admins", "timeout calling the payment provider",
	"weak password policy", "export to csv fails", "mobile app crashes on login", "evidence request auditors",
}

// BenchmarkSearchAudit runs the planner (filter.Planner: ListObjects pre-filter,
// vector search, BatchCheck post-filter with higher consistency, over-fetch) on
// the demo org with the real components (hashing embedder, embedded store,
// embedded OpenFGA on its memory datastore), as anne, alternating between two
// planners that differ only in their audit log: the planner's in-memory log
// (audit=off) and the durable file log (audit=file: fsync'd group commit).
// Interleaving puts both under the same machine load.
//
//	go test ./audit/internal/searchbench -run '^$' -bench SearchAudit -benchtime 2000x
func BenchmarkSearchAudit(b *testing.B) {
	ctx := context.Background()
	e, err := fgaembedded.New(ctx, fgaembedded.Config{Datastore: fgaembedded.Memory})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	org, err := fgafile.Parse(testdata.OrgFGA)
	if err != nil {
		b.Fatal(err)
	}
	if err := org.WriteTuples(ctx, e, 0); err != nil {
		b.Fatal(err)
	}
	emb := retrieval.NewHashing(retrieval.HashingConfig{})
	st, err := storeembedded.Open(ctx, storeembedded.Config{Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ix, err := indexer.New(indexer.Config{Store: st, Embedder: emb})
	if err != nil {
		b.Fatal(err)
	}
	if sum, err := ix.Run(ctx, indexer.NewJSONLData("demo", testdata.Tickets, 256)); err != nil || sum.Failed > 0 {
		b.Fatalf("index: %v", err)
	}
	durable, err := filelog.Open(ctx, filelog.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer durable.Close()
	planners := map[bool]*filter.Planner{
		false: filter.New(filter.Config{}, e, st, emb, &filter.MemoryLog{}),
		true:  filter.New(filter.Config{}, e, st, emb, durable),
	}
	p := authz.Principal{Kind: authz.KindUser, Tenant: "acme", User: "anne", AuthMethod: "jwt", Scopes: []string{"tickets:read"}}

	lat := map[bool][]time.Duration{}
	b.ResetTimer()
	for i := range b.N {
		with := i%2 == 1
		t0 := time.Now()
		resp, err := planners[with].Search(ctx, p, filter.Request{Query: queries[(i/2)%len(queries)], TopK: 10})
		if err != nil {
			b.Fatal(err)
		}
		lat[with] = append(lat[with], time.Since(t0))
		if resp.AuditID == "" {
			b.Fatal("no audit id")
		}
	}
	b.StopTimer()
	if len(lat[true]) == 0 || len(lat[false]) == 0 {
		return // the 1-iteration probe run
	}
	pct := func(d []time.Duration, q float64) float64 {
		slices.Sort(d)
		return float64(d[int(float64(len(d)-1)*q)].Microseconds()) / 1000
	}
	for _, with := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "file"}[with]
		b.ReportMetric(pct(lat[with], 0.5), "p50_ms_audit_"+name)
		b.ReportMetric(pct(lat[with], 0.99), "p99_ms_audit_"+name)
	}
	off, on := pct(lat[false], 0.5), pct(lat[true], 0.5)
	b.ReportMetric(100*(on-off)/off, "p50_overhead_%")
}
