package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestSearchSpanTree: with tracing on, one search over serve's real stack
// (embedded engine and store, real HTTP) is one trace that continues the
// caller's traceparent: a server span whose children are the token
// verification, the pre-filter listings, the embedding, each store round, each
// BatchCheck and the audit append; and the audit record carries the trace id.
func TestSearchSpanTree(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	env := startLoadServer(t, func(c *serveConfig) { c.tracer = tp })

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest(http.MethodPost, env.base+"/v1/search", strings.NewReader(`{"query":"login timeout","top_k":5}`))
	req.Header.Set("Authorization", "Bearer "+env.tokens["anne"])
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Results []json.RawMessage `json:"results"`
		AuditID string            `json:"audit_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(body.Results) == 0 {
		t.Fatalf("search: %d %v %+v", resp.StatusCode, err, body)
	}

	spans := rec.Ended()
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "POST /v1/search" {
			root = s
		}
	}
	if root == nil {
		t.Fatalf("no server span among %d", len(spans))
	}
	if got := root.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("trace id %s, want the caller's %s", got, traceID)
	}
	if got := root.Parent().SpanID().String(); got != "00f067aa0ba902b7" || !root.Parent().IsRemote() {
		t.Errorf("server span's parent %s (remote %v), want the caller's span", got, root.Parent().IsRemote())
	}
	if root.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span kind %v", root.SpanKind())
	}
	children := map[string]int{}
	for _, s := range spans {
		if s.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("span %s in another trace", s.Name())
		}
		if s.Parent().SpanID() == root.SpanContext().SpanID() {
			children[s.Name()]++
		}
	}
	for _, name := range []string{"auth.Verify", "authz.ListObjects", "embed", "store.Search", "authz.BatchCheck", "audit.Append"} {
		if children[name] == 0 {
			t.Errorf("no %s span under the request (children: %v)", name, children)
		}
	}
	rc, err := env.a.audit.Get(context.Background(), body.AuditID)
	if err != nil {
		t.Fatal(err)
	}
	if rc.TraceID != traceID {
		t.Errorf("audit record trace_id %q, want %s", rc.TraceID, traceID)
	}
}
