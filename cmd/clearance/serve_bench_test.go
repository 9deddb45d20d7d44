package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/testdata"
)

// BenchmarkServeSearch: POST /v1/search end to end on the demo org, as serve runs
// it: dev JWT or API-key verification, the planner on the embedded engine
// (sqlite) and store, the durable audit log in the data dir, JSON over loopback
// HTTP. One principal of each kind; top_k 10; reports p50 and p99.
func BenchmarkServeSearch(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := demoConfig("127.0.0.1:0", b.TempDir())
	if err := cfg.resolve(); err != nil {
		b.Fatal(err)
	}
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if _, err := loadDemoOrg(ctx, a.engine); err != nil {
		b.Fatal(err)
	}
	if _, err := a.indexer.Run(ctx, indexer.NewJSONLData("demo", testdata.Tickets, 256)); err != nil {
		b.Fatal(err)
	}
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
