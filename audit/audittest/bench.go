package audittest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/audit"
)

// BenchAppend measures Append with 1, 8 and 64 concurrent callers: throughput
// (records/s) and per-call latency (p50/p99, µs). Each record has 20 candidates,
// like a top-10 search that over-fetched.
func BenchAppend(b *testing.B, l audit.Log) {
	tickets := make([]string, 20)
	for i := range tickets {
		tickets[i] = fmt.Sprintf("T-%d", 1000+i)
	}
	tmpl := Rec("acme", "anne", "copilot", tickets...)
	for _, conc := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			var failed atomic.Value
			var wg sync.WaitGroup
			start := time.Now()
			b.ResetTimer()
			for range conc {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						r := *tmpl
						t0 := time.Now()
						if err := l.Append(context.Background(), &r); err != nil {
							failed.Store(err)
							return
						}
						lat[i] = time.Since(t0)
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
		})
	}
}
