package searchbench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
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
// embedded OpenFGA on its memory or sqlite datastore), as anne, alternating between
// three planners that differ only in their audit log: the planner's in-memory log
// (audit=off), the durable file log (audit=file: fdatasync'd group commit) and the
// file log without syncing (audit=file_nosync: everything but the disk flush).
// Interleaving puts all three under the same machine load. callers=N runs N
// searches at once (the group commit then shares flushes).
//
//	go test ./audit/internal/searchbench -run '^$' -bench SearchAudit -benchtime 3000x
func BenchmarkSearchAudit(b *testing.B) {
	for _, datastore := range []string{fgaembedded.Memory, fgaembedded.SQLite} {
		for _, callers := range []int{1, 4} {
			b.Run(fmt.Sprintf("engine=%s/callers=%d", datastore, callers), func(b *testing.B) {
				benchSearchAudit(b, datastore, callers)
			})
		}
	}
}

func benchSearchAudit(b *testing.B, datastore string, callers int) {
	ctx := context.Background()
	e, err := fgaembedded.New(ctx, fgaembedded.Config{Datastore: datastore, DataDir: b.TempDir()})
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
	nosync, err := filelog.Open(ctx, filelog.Config{Dir: b.TempDir(), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer nosync.Close()
	modes := []string{"off", "file", "file_nosync"}
	planners := []*filter.Planner{
		filter.New(filter.Config{}, e, st, emb, &filter.MemoryLog{}),
		filter.New(filter.Config{}, e, st, emb, durable),
		filter.New(filter.Config{}, e, st, emb, nosync),
	}
	p := authz.Principal{Kind: authz.KindUser, Tenant: "acme", User: "anne", AuthMethod: "jwt", Scopes: []string{"tickets:read"}}

	var mu sync.Mutex
	lat := make([][]time.Duration, len(modes))
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	for range callers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				m := i % len(modes)
				t0 := time.Now()
				resp, err := planners[m].Search(ctx, p, filter.Request{Query: queries[(i/len(modes))%len(queries)], TopK: 10})
				d := time.Since(t0)
				if err == nil && resp.AuditID == "" {
					err = fmt.Errorf("no audit id")
				}
				if err != nil {
					failed.Store(err)
					return
				}
				mu.Lock()
				lat[m] = append(lat[m], d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	if len(lat[len(modes)-1]) == 0 {
		return // the probe run
	}
	pct := func(d []time.Duration, q float64) float64 {
		slices.Sort(d)
		return float64(d[int(float64(len(d)-1)*q)].Microseconds()) / 1000
	}
	off := pct(lat[0], 0.5)
	for m, name := range modes {
		b.ReportMetric(pct(lat[m], 0.5), "p50_ms_audit_"+name)
		b.ReportMetric(pct(lat[m], 0.99), "p99_ms_audit_"+name)
		if m > 0 {
			b.ReportMetric(100*(pct(lat[m], 0.5)-off)/off, "p50_overhead_%_"+name)
		}
	}
}
