package filter_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/filter"
)

// statLog gives records ids and keeps only the sums of their stage latencies, so a
// long benchmark does not grow memory; the audit log's own cost is benchmarked in
// audit/.
type statLog struct {
	mu  sync.Mutex
	sum map[string]int64
	n   int
}

func (l *statLog) Append(_ context.Context, r *audit.Record) error {
	r.ID = ulid.Make().String()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sum == nil {
		l.sum = map[string]int64{}
	}
	for k, v := range r.Latency {
		l.sum[k] += v
	}
	l.n++
	return nil
}

// report adds the mean per-stage latency (ms/op) and resets.
func (l *statLog) report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, stage := range []string{"prefilter", "check"} {
		b.ReportMetric(float64(l.sum[stage])/float64(max(l.n, 1))/1000, stage+"-ms/op")
	}
	l.sum, l.n = nil, 0
}

var benchQueries = []string{
	"login timeout on SSO redirect",
	"payment webhook retries failing",
	"database connection pool exhausted",
	"export report is slow",
	"mobile app crash after update",
}

// BenchmarkSearch: search latency on the demo org (embedded engine on sqlite,
// embedded store, hashing embedder, top_k 10) by principal kind, with the
// pre-filter cache warm and decisions checked ("warm"), both caches warm (the
// default, "decisions") and both off ("cold": every search lists and checks).
// Reports p50 and p99 in ms besides ns/op.
func BenchmarkSearch(b *testing.B) {
	d := loadDemo(b)
	ctx := context.Background()
	for _, cache := range []struct {
		name            string
		size, decisions int
	}{{"warm", 0, -1}, {"decisions", 0, 0}, {"cold", -1, -1}} {
		log := &statLog{}
		pl := filter.New(filter.Config{CacheSize: cache.size, DecisionCacheSize: cache.decisions}, d.eng, d.store, d.emb, log)
		// The four kinds, and a service account's key bounded by its minter.
		for _, c := range append(demoPrincipals[:4:4], demoPrincipals[len(demoPrincipals)-1]) {
			b.Run(c.name+"/"+cache.name, func(b *testing.B) {
				log.report(b) // drop what earlier runs of this sub-benchmark left
				var lat []time.Duration
				i := 0
				for b.Loop() {
					start := time.Now()
					if _, err := pl.Search(ctx, c.p, filter.Request{Query: benchQueries[i%len(benchQueries)], TopK: 10}); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
					i++
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
				log.report(b)
			})
		}
	}
}
