package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/clearance-dev/clearance/authz"
)

// TestTracedRequests: with a tracer, a request continues the caller's
// traceparent in a server span named by route (not path), the access log line
// carries its trace id, the answer's status is on the span, and probes and
// scrapes are not traced.
func TestTracedRequests(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	auth := staticAuth{"tok": {Kind: authz.KindUser, Tenant: "acme", User: "erin"}}
	srv := httptest.NewServer(New(Config{Logger: log}, Deps{Auth: auth, Engine: demoEngine(t), Tracer: tp}).Handler())
	defer srv.Close()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	hsend(t, http.MethodGet, srv.URL+"/v1/grants", "", "Authorization", "Bearer tok",
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	hget(t, srv.URL+"/healthz")
	hget(t, srv.URL+"/metrics")
	hget(t, srv.URL+"/readyz")

	spans := rec.Ended()
	if len(spans) != 1 {
		names := []string{}
		for _, s := range spans {
			names = append(names, s.Name())
		}
		t.Fatalf("spans %v, want only the /v1 request's", names)
	}
	s := spans[0]
	if s.Name() != "GET /v1/grants" || s.SpanKind() != trace.SpanKindServer || s.SpanContext().TraceID().String() != traceID ||
		s.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("span %s kind %v trace %s parent %s", s.Name(), s.SpanKind(), s.SpanContext().TraceID(), s.Parent().SpanID())
	}
	var status int64
	for _, a := range s.Attributes() {
		if a.Key == "http.response.status_code" {
			status = a.Value.AsInt64()
		}
	}
	if status != 200 {
		t.Errorf("span status code %d", status)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, `"route":"/v1/grants","status":200`) || !strings.Contains(out, `"trace_id":"`+traceID+`"`) {
		t.Fatalf("access log without the trace id:\n%s", out)
	}
}
