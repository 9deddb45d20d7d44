package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/authztest"
	"github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/internal/telemetry"
)

func openEngine(t *testing.T) authz.Engine {
	t.Helper()
	e, err := embedded.New(context.Background(), embedded.Config{Datastore: embedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestInstrumentedEngineConformance: the wrapped engine is still an engine by
// the whole conformance suite (revisions, ListUsers, listings, faults aside).
func TestInstrumentedEngineConformance(t *testing.T) {
	authztest.Run(t, authztest.Backend{
		New: func(t *testing.T) authz.Engine {
			return telemetry.New(prometheus.NewRegistry(), nil, "test").Engine(openEngine(t))
		},
		// Faults are the backend's; the wrapper only passes errors on.
	})
}

// TestEngineKeepsOptionalInterfaces: the planner switches its decision cache
// and exact invalidation on by type assertions; the wrapper must not hide them.
func TestEngineKeepsOptionalInterfaces(t *testing.T) {
	inner := openEngine(t)
	defer inner.Close()
	e := telemetry.New(prometheus.NewRegistry(), nil, "test").Engine(inner)
	if _, ok := e.(authz.Revisioned); !ok {
		t.Error("not Revisioned")
	}
	if _, ok := e.(authz.ChangeLister); !ok {
		t.Error("not a ChangeLister")
	}
	if m, ok := e.(authz.ClearanceModeled); !ok || !m.ClearanceModel() {
		t.Error("ClearanceModel lost")
	}
	if _, ok := e.(filter.FlowEngine); !ok {
		t.Error("not a FlowEngine")
	}
}

// TestEngineMetrics: calls are counted by method and outcome, a BatchCheck's
// size observed.
func TestEngineMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	inner := openEngine(t)
	defer inner.Close()
	e := telemetry.New(reg, nil, "test").Engine(inner)
	ctx := context.Background()
	if err := e.Write(ctx, []authz.Tuple{{User: "user:anne", Relation: "member", Object: "tenant:acme"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.Write(ctx, []authz.Tuple{{User: "user:anne", Relation: "nope", Object: "tenant:acme"}}, nil); !errors.Is(err, clearance.ErrInvalid) {
		t.Fatalf("bad write: %v", err)
	}
	checks := []authz.Check{{User: "user:anne", Relation: "member", Object: "tenant:acme"}, {User: "user:bob", Relation: "member", Object: "tenant:acme"}}
	if _, err := e.BatchCheck(ctx, authz.Query{}, checks); err != nil {
		t.Fatal(err)
	}
	for range e.ListObjects(ctx, authz.Query{}, "user:anne", "member", "tenant") {
	}
	want := `
# HELP clearance_authz_batch_check_size Checks per BatchCheck call.
# TYPE clearance_authz_batch_check_size histogram
clearance_authz_batch_check_size_bucket{le="1"} 0
clearance_authz_batch_check_size_bucket{le="2"} 1
clearance_authz_batch_check_size_bucket{le="4"} 1
clearance_authz_batch_check_size_bucket{le="8"} 1
clearance_authz_batch_check_size_bucket{le="16"} 1
clearance_authz_batch_check_size_bucket{le="32"} 1
clearance_authz_batch_check_size_bucket{le="64"} 1
clearance_authz_batch_check_size_bucket{le="128"} 1
clearance_authz_batch_check_size_bucket{le="256"} 1
clearance_authz_batch_check_size_bucket{le="512"} 1
clearance_authz_batch_check_size_bucket{le="1024"} 1
clearance_authz_batch_check_size_bucket{le="2048"} 1
clearance_authz_batch_check_size_bucket{le="+Inf"} 1
clearance_authz_batch_check_size_sum 2
clearance_authz_batch_check_size_count 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "clearance_authz_batch_check_size"); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		method, outcome string
		want            float64
	}{
		{"Write", "ok", 1}, {"Write", "invalid", 1}, {"BatchCheck", "ok", 1}, {"ListObjects", "ok", 1},
	} {
		got := counter(t, reg, "clearance_authz_requests_total", c.method, c.outcome)
		if got != c.want {
			t.Errorf("%s %s = %g, want %g", c.method, c.outcome, got, c.want)
		}
	}
}

// counter reads one series of a counter by its label values (in label-name
// order); 0 when absent.
func counter(t *testing.T, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetValue())
			}
			// Labels come sorted by name: method, outcome.
			if fmt.Sprint(got) == fmt.Sprint(values) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestAuditLogStampsTraceID: a record appended under a traced request gets the
// trace id; the answer is counted by kind, status, path and principal kind.
func TestAuditLogStampsTraceID(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel := telemetry.New(reg, tp, "test")
	log := tel.AuditLog(&filter.MemoryLog{})
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	r := &audit.Record{Kind: "search", Tenant: "acme", Status: "partial", Principal: authz.Principal{Kind: authz.KindAgent},
		Plan: audit.Plan{Path: "prefilter", Checked: 7, Denied: 2}, Latency: map[string]int64{"check": 1500}}
	if err := log.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	span.End()
	if r.TraceID != span.SpanContext().TraceID().String() {
		t.Errorf("trace_id %q, want %s", r.TraceID, span.SpanContext().TraceID())
	}
	if len(rec.Ended()) != 2 || rec.Ended()[0].Name() != "audit.Append" || rec.Ended()[0].Parent().SpanID() != span.SpanContext().SpanID() {
		t.Errorf("spans %v", rec.Ended())
	}
	// Untraced: no id, no span.
	r2 := &audit.Record{Kind: "ticket", Tenant: "acme", Status: "exhausted", Principal: authz.Principal{Kind: authz.KindUser}}
	if err := log.Append(context.Background(), r2); err != nil || r2.TraceID != "" {
		t.Fatalf("untraced: %v %q", err, r2.TraceID)
	}
	want := `
# HELP clearance_answers_total Audited read-path answers by kind (search, mcp_search, ticket, mcp_ticket, flow_check, grant, revoke), status (complete, exhausted, partial, error), pre-filter path and principal kind.
# TYPE clearance_answers_total counter
clearance_answers_total{kind="search",path="prefilter",principal_kind="agent",status="partial"} 1
clearance_answers_total{kind="ticket",path="none",principal_kind="user",status="exhausted"} 1
# HELP clearance_candidates_total Store candidates of audited answers: fetched, checked (by the engine or the decision cache), denied (by the post-filter), cached (decisions from the decision cache).
# TYPE clearance_candidates_total counter
clearance_candidates_total{kind="search",stage="checked"} 7
clearance_candidates_total{kind="search",stage="denied"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "clearance_answers_total", "clearance_candidates_total"); err != nil {
		t.Error(err)
	}
}

func TestTracingFromEnv(t *testing.T) {
	for _, c := range []struct {
		env      map[string]string
		exporter string
		protocol string
		bad      bool
	}{
		{env: nil, exporter: "none"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, exporter: "otlp"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, exporter: "otlp"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, exporter: "otlp", protocol: "grpc"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, exporter: "none"},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, exporter: "none"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, bad: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, bad: true},
	} {
		got, err := telemetry.TracingFromEnv(func(k string) string { return c.env[k] })
		if c.bad {
			if err == nil {
				t.Errorf("%v: no error", c.env)
			}
			continue
		}
		if c.protocol == "" {
			c.protocol = "http/protobuf"
		}
		if err != nil || got.Exporter != c.exporter || got.Protocol != c.protocol {
			t.Errorf("%v: %+v %v, want %s %s", c.env, got, err, c.exporter, c.protocol)
		}
	}
}

func TestFailureReason(t *testing.T) {
	for _, c := range []struct {
		cred string
		err  error
		want string
	}{
		{"a.b.c", errors.New(`access token: no trusted issuer "": unauthenticated`), "unknown_issuer"},
		{"a.b.c", errors.New(`access token: "exp" not satisfied: unauthenticated`), "expired"},
		{"a.b.c", errors.New(`access token: audience ["x"] is not this resource: unauthenticated`), "audience"},
		{"a.b.c", errors.New(`access token: could not verify message using any of the signatures or keys: unauthenticated`), "signature"},
		{"clr_x", errors.New("api key refused"), "api_key"},
		{"a.b.c", fmt.Errorf("jwks down: %w", clearance.ErrUnavailable), "unavailable"},
		{"a.b.c", errors.New("something new"), "other"},
	} {
		if got := telemetry.FailureReason(c.cred, c.err); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, got, c.want)
		}
	}
}

// TestPropagatingTransport: a request made under a span carries its
// traceparent; one without a span carries none.
func TestPropagatingTransport(t *testing.T) {
	got := make(chan string, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get("traceparent") }))
	defer srv.Close()
	c := &http.Client{Transport: telemetry.PropagatingTransport(nil)}
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	for _, ctx := range []context.Context{ctx, context.Background()} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := "00-" + span.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-01"
	if h := <-got; h != want {
		t.Errorf("traceparent %q, want %q", h, want)
	}
	if h := <-got; h != "" {
		t.Errorf("untraced request sent traceparent %q", h)
	}
}

// TestMetricNamesLint: every clearance_ family passes Prometheus's naming lint
// (units in names, _total on counters, no camel case).
func TestMetricNamesLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	tel := telemetry.New(reg, nil, "test")
	// Touch every vector so each family has a series to lint.
	inner := openEngine(t)
	defer inner.Close()
	e := tel.Engine(inner)
	_, _ = e.BatchCheck(context.Background(), authz.Query{}, []authz.Check{{User: "user:a", Relation: "member", Object: "tenant:t"}})
	_ = tel.AuditLog(&filter.MemoryLog{}).Append(context.Background(), &audit.Record{Kind: "search", Tenant: "t", Status: "complete",
		Plan: audit.Plan{Rounds: 1, Checked: 1}, Latency: map[string]int64{"total": 1}})
	tel.FlushObserver()(1, 0, nil)
	tel.IndexObserver("push").RunDone(indexer.Summary{Embedded: 1}, nil)
	tel.IndexObserver("push").WatermarkSaved()
	_, _, _ = tel.Authenticator(refuse{}).Authenticate(context.Background(), "x")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "clearance_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

type refuse struct{}

func (refuse) Authenticate(context.Context, string) (authz.Principal, time.Time, error) {
	return authz.Principal{}, time.Time{}, fmt.Errorf("access token: malformed: %w", clearance.ErrUnauthenticated)
}
