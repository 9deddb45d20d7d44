package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
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

// TestOTLPExportFromEnv: the real `clearance serve`, configured only by the
// standard OTEL_* variables, exports a request's spans over OTLP/HTTP to a
// receiver (here an in-process one decoding the protobuf), continuing the
// caller's traceparent, with service.name clearance.
func TestOTLPExportFromEnv(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{} // span name -> trace id
	service := ""
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					got[s.GetName()] = hex.EncodeToString(s.GetTraceId())
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(nil)
	}))
	defer recv.Close()
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	data := t.TempDir()
	base := startServe(t, data)
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/tickets/NOPE-1", nil)
	req.Header.Set("Authorization", "Bearer "+mint(t, data, "anne", "acme"))
	req.Header.Set("traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("read: %d", resp.StatusCode)
	}
	// Spans leave in batches; wait for this request's (the deadline only
	// bounds a failure, it measures nothing).
	want := []string{"GET /v1/tickets/:id", "auth.Verify", "store.Get", "authz.BatchCheck", "audit.Append"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, name := range want {
			if got[name] == traceID {
				n++
			}
		}
		svc := service
		mu.Unlock()
		if n == len(want) {
			if svc != "clearance" {
				t.Errorf("service.name %q", svc)
			}
			return
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("spans received %v, want %v in trace %s", got, want, traceID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
