package telemetry

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerName is the instrumentation scope of clearance's spans.
const TracerName = "github.com/clearance-dev/clearance"

// TracingConfig says whether and where spans are exported. FromEnv fills it
// from the standard OpenTelemetry variables.
type TracingConfig struct {
	// Exporter is "otlp" (export) or "none" (the default: no spans at all).
	Exporter string
	// Protocol is the OTLP transport: "http/protobuf" (default) or "grpc".
	// Endpoint, headers, TLS, timeouts and compression are read by the
	// exporter itself from OTEL_EXPORTER_OTLP_* / OTEL_EXPORTER_OTLP_TRACES_*.
	Protocol string
	// ServiceVersion goes into the resource (service.version).
	ServiceVersion string
}

// TracingFromEnv reads OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER and
// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL. Tracing is off by default: it is on when
// OTEL_TRACES_EXPORTER is "otlp", or when it is unset and an OTLP endpoint is
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
// Sampling (OTEL_TRACES_SAMPLER, default parentbased_always_on), the resource
// (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) and the batch processor
// (OTEL_BSP_*) follow their variables in the SDK.
func TracingFromEnv(getenv func(string) string) (TracingConfig, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := TracingConfig{Exporter: "none", Protocol: "http/protobuf"}
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return c, nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			c.Exporter = "otlp"
		}
	case "none", "otlp":
		c.Exporter = exp
	default:
		return c, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: clearance exports traces with otlp or none", exp)
	}
	p := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if p == "" {
		p = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch p {
	case "", "http/protobuf":
	case "grpc":
		c.Protocol = p
	default:
		return c, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: use http/protobuf or grpc", p)
	}
	return c, nil
}

// NewTracerProvider returns the provider cfg asks for and its shutdown (which
// flushes queued spans). Exporter "none" gives a no-op provider: spans cost
// next to nothing and nothing leaves the process.
func NewTracerProvider(ctx context.Context, cfg TracingConfig) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.Exporter != "otlp" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	var client otlptrace.Client
	if cfg.Protocol == "grpc" {
		client = otlptracegrpc.NewClient()
	} else {
		client = otlptracehttp.NewClient()
	}
	// New does not dial: an unreachable collector costs dropped spans, never a
	// failed start or a slow request.
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName("clearance"), semconv.ServiceVersion(cfg.ServiceVersion)))
	if err != nil {
		return nil, nil, fmt.Errorf("trace resource: %w", err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the defaults.
	if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, env); err == nil {
			res = merged
		}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// start opens a child span of the one in ctx. Without a sampled parent (no
// request trace: readiness pings, background indexing, tracing off) it opens
// nothing, so the decorators cost one context lookup.
func (m *Telemetry) start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, parent
	}
	return m.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// end closes span with err's outcome; the error text stays out of the span (it
// may name tickets), the audit record and the log have it.
func end(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, Outcome(err))
	}
	span.End()
}

// TraceID returns the id of ctx's trace, or "" when there is none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
