package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/internal/bench"
	"github.com/clearance-dev/clearance/testdata"
)

// BenchmarkServeSearch: POST /v1/search end to end on the demo org, as serve runs
// it: dev JWT or API-key verification, the planner on the embedded engine
// (sqlite) and store, the durable audit log in the data dir, JSON over loopback
// HTTP. One principal of each kind; top_k 10; reports p50 and p99.
func BenchmarkServeSearch(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, a := openDemoApp(ctx, b)
	_, key, err := a.keys.Create(ctx, "acme", "acme-ingest", "bench", []string{"tickets:read"}, auth.Creator{Kind: auth.CreatorOperator})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		b.Fatal(err)
	}
	up := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln, func(base string) error { up <- base; return nil }) }()
	base := <-up
	defer func() { cancel(); <-done }()

	principals := []struct{ name, sub, act, apiKey string }{
		{name: "tenant_admin", sub: "bob"},
		{name: "user", sub: "anne"},
		{name: "agent", sub: "anne", act: "copilot"},
		{name: "service_account", apiKey: key},
	}
	queries := []string{"login timeout", "invoice dispute overage", "webhook retries backoff", "certificate expired", "memory leak worker"}
	client := &http.Client{}
	for _, p := range principals {
		cred := p.apiKey
		if cred == "" {
			if cred, err = a.devToken(p.sub, "acme", p.act, "tickets:read", time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(p.name, func(b *testing.B) {
			var lat []time.Duration
			i := 0
			for b.Loop() {
				body := []byte(`{"query":"` + queries[i%len(queries)] + `","top_k":10}`)
				i++
				req, _ := http.NewRequest(http.MethodPost, base+"/v1/search", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+cred)
				req.Header.Set("Content-Type", "application/json")
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(start))
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			if page, err := a.audit.List(ctx, audit.Filter{Limit: 1}); err == nil && len(page.Records) == 1 {
				b.Logf("%s: stages of the last search (µs): %v", p.name, page.Records[0].Latency)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkServeConcurrency: throughput and latency of POST /v1/search (top_k
// 10, the principals in turn) at 1, 2, 4, 8 and 32 concurrent clients, through
// the whole server with its admission control at the defaults (concurrency
// limit and queue) and the per-principal policies off, so the numbers are the
// server's capacity, not one principal's allowance. The client counts take
// turns in rounds of a few seconds each (CLEARANCE_BENCH_ROUNDS, default 3;
// CLEARANCE_BENCH_ROUND, default 5s), so a shared machine's changing load
// spreads over all of them instead of skewing one. Reports per client count:
// ok answers per second, p50 and p99 of every answer, and overload answers
// (503: the queue wait ran out), which are not errors here.
//
//	go test ./cmd/clearance -run '^$' -bench ServeConcurrency -benchtime 1x
//
// CLEARANCE_BENCH_SCALE=100k runs it on `clearance bench`'s generated org of
// that many chunks instead (loading takes minutes), searching as its user and
// agent principals with its queries.
func BenchmarkServeConcurrency(b *testing.B) {
	noPolicies := func(c *serveConfig) { c.RateLimit, c.MaxPerPrincipal = 0, 0 }
	var e *loadEnv
	who := []string{"anne", "bob", "copilot", "dave", "erin", "frank"}
	if scale := os.Getenv("CLEARANCE_BENCH_SCALE"); scale != "" {
		chunks, err := parseScale(scale)
		if err != nil {
			b.Fatal(err)
		}
		org := bench.GenerateOrg(bench.DefaultOrgConfig(chunks))
		who = who[:0]
		e = startServer(b, noPolicies, func(ctx context.Context, a *app) (map[string]string, error) {
			start := time.Now()
			if _, _, err := bench.Load(ctx, org, a.engine, a.store, a.embedder, 10_000, nil); err != nil {
				return nil, err
			}
			st := org.Stats()
			b.Logf("org of %d chunks, %d tickets, %d tuples loaded in %s", st.Chunks, st.Tickets, st.Tuples, time.Since(start).Round(time.Second))
			tokens := map[string]string{}
			for i, v := range org.Viewers {
				p := v.Principal
				if p.Kind == authz.KindServiceAccount {
					continue
				}
				tok, err := a.devToken(p.User, p.Tenant, p.Agent, "tickets:read", 24*time.Hour)
				if err != nil {
					return nil, err
				}
				label := fmt.Sprint("viewer-", i)
				tokens[label] = tok
				who = append(who, label)
			}
			return tokens, nil
		})
		e.queries = org.Queries(64, 7)
	} else {
		e = startLoadServer(b, noPolicies)
	}
	rounds, round := 3, 5*time.Second
	if v := os.Getenv("CLEARANCE_BENCH_ROUNDS"); v != "" {
		if _, err := fmt.Sscan(v, &rounds); err != nil || rounds < 1 {
			b.Fatalf("CLEARANCE_BENCH_ROUNDS=%q", v)
		}
	}
	if v := os.Getenv("CLEARANCE_BENCH_ROUND"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("CLEARANCE_BENCH_ROUND=%q: %v", v, err)
		}
		round = d
	}
	counts := []int{1, 2, 4, 8, 32}
	type result struct {
		lat           []time.Duration
		ok, over, bad int
		elapsed       time.Duration
		loadBefore    []string
	}
	res := make([]result, len(counts))
	var i atomic.Int64
	for range rounds {
		for ci, clients := range counts {
			if la, err := os.ReadFile("/proc/loadavg"); err == nil {
				res[ci].loadBefore = append(res[ci].loadBefore, strings.Fields(string(la))[0])
			}
			var mu sync.Mutex
			var wg sync.WaitGroup
			end := time.Now().Add(round)
			start := time.Now()
			for c := range clients {
				wg.Go(func() {
					for time.Now().Before(end) {
						n := int(i.Add(1))
						t0 := time.Now()
						a := e.search(context.Background(), who[(c+n)%len(who)], 10, n)
						d := time.Since(t0)
						mu.Lock()
						res[ci].lat = append(res[ci].lat, d)
						switch {
						case a.err == nil && a.status == http.StatusOK:
							res[ci].ok++
						case a.err == nil && overload(a):
							res[ci].over++
						default:
							res[ci].bad++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			res[ci].elapsed += time.Since(start)
		}
	}
	for ci, clients := range counts {
		rs := res[ci]
		if rs.bad > 0 {
			b.Errorf("%d clients: %d answers neither 200 nor an overload answer", clients, rs.bad)
		}
		slices.Sort(rs.lat)
		p50 := float64(rs.lat[len(rs.lat)/2].Microseconds()) / 1000
		p99 := float64(rs.lat[min(len(rs.lat)-1, len(rs.lat)*99/100)].Microseconds()) / 1000
		okps := float64(rs.ok) / rs.elapsed.Seconds()
		b.ReportMetric(okps, fmt.Sprintf("c%d-ok/s", clients))
		b.ReportMetric(p50, fmt.Sprintf("c%d-p50-ms", clients))
		b.ReportMetric(p99, fmt.Sprintf("c%d-p99-ms", clients))
		b.Logf("clients %2d: %6.1f ok/s  p50 %7.1f ms  p99 %7.1f ms  %d answers, %d overload (load avg before each round: %s)",
			clients, okps, p50, p99, len(rs.lat), rs.over, strings.Join(rs.loadBefore, " "))
	}
}

// openDemoApp opens serve's stack as demo configures it, in a fresh data dir,
// with the demo org's tuples and tickets loaded; it closes when tb ends. The
// per-principal rate limit is off: a benchmark sends as few principals as fast
// as they are answered.
func openDemoApp(ctx context.Context, tb testing.TB) (serveConfig, *app) {
	tb.Helper()
	cfg := demoConfig("127.0.0.1:0", tb.TempDir())
	cfg.RateLimit, cfg.MaxPerPrincipal = 0, 0
	if err := cfg.resolve(); err != nil {
		tb.Fatal(err)
	}
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	if _, err := loadDemoOrg(ctx, a.engine); err != nil {
		tb.Fatal(err)
	}
	if _, err := a.indexer.Run(ctx, indexer.NewJSONLData("demo", testdata.Tickets, 256)); err != nil {
		tb.Fatal(err)
	}
	return cfg, a
}
