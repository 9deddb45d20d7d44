package main

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/telemetry"
)

// BenchmarkSearchTelemetry: the cost of the decorators on one search of the
// demo org (embedded engine on sqlite, embedded store, an in-memory audit log
// so no fsync hides the difference), in the same run: off (the bare backends),
// metrics (the decorators, no tracer), and metrics+tracing (every span sampled
// and handed to a batch processor with an exporter that drops them, under a
// request span as the HTTP middleware opens it).
func BenchmarkSearchTelemetry(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, a := openDemoApp(ctx, b)
	inner := a.engine.(interface{ Unwrap() authz.Engine }).Unwrap()

	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer tp.Shutdown(context.Background())
	for _, caches := range []string{"cached", "uncached"} {
		cfg := filter.Config{}
		if caches == "uncached" {
			// Every search lists and checks with the engine.
			cfg.CacheSize, cfg.DecisionCacheSize = -1, -1
		}
		for _, mode := range []string{"off", "metrics", "metrics+tracing"} {
			b.Run(caches+"/"+mode, func(b *testing.B) { benchSearch(ctx, b, a, cfg, inner, tp, mode) })
		}
	}
}

func benchSearch(ctx context.Context, b *testing.B, a *app, cfg filter.Config, inner authz.Engine, tp trace.TracerProvider, mode string) {
	anne := authz.Principal{Kind: authz.KindUser, Tenant: "acme", User: "anne", AuthMethod: "jwt", Scopes: []string{"tickets:read"}}
	queries := []string{"login timeout", "invoice dispute overage", "webhook retries backoff", "certificate expired", "memory leak worker"}
	log := &filter.MemoryLog{}
	var pl *filter.Planner
	var root trace.Tracer
	switch mode {
	case "off":
		pl = filter.New(cfg, inner, a.store, a.embedder, log)
	default:
		var tel *telemetry.Telemetry
		if mode == "metrics" {
			tel = telemetry.New(prometheus.NewRegistry(), nil, "bench")
		} else {
			tel = telemetry.New(prometheus.NewRegistry(), tp, "bench")
			root = tp.Tracer("bench")
		}
		pl = filter.New(cfg, tel.Engine(inner), tel.Store(a.store), tel.Embedder(a.embedder), tel.AuditLog(log))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ctx := ctx
		var span trace.Span
		if root != nil {
			ctx, span = root.Start(ctx, "POST /v1/search", trace.WithSpanKind(trace.SpanKindServer))
		}
		if _, err := pl.Search(ctx, anne, filter.Request{Query: queries[i%len(queries)], TopK: 10}); err != nil {
			b.Fatal(err)
		}
		if span != nil {
			span.End()
		}
	}
}
