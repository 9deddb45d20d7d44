package api

import (
	"strconv"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerScope is the instrumentation scope of the server spans.
const tracerScope = "github.com/clearance-dev/clearance/api"

func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(tracerScope)
}

// untraced are the probes and the scrape: frequent, cheap, and noise in a
// trace store.
var untraced = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// propagator reads the caller's W3C traceparent (and tracestate), so a
// request's spans join the agent's trace.
var propagator = propagation.TraceContext{}

// traced starts the request's server span, named by method and route pattern
// (never the path: it holds ticket ids). Everything the request does (token
// verification, listings, store rounds, checks, the audit append) hangs below
// it.
func (s *Server) traced(next echo.HandlerFunc) echo.HandlerFunc {
	if s.tracer == nil {
		return next
	}
	return func(c echo.Context) error {
		route := c.Path()
		if untraced[route] {
			return next(c)
		}
		if route == "" {
			route = "unmatched"
		}
		r := c.Request()
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route),
				attribute.String("clearance.request_id", c.Response().Header().Get(echo.HeaderXRequestID))))
		defer span.End()
		c.SetRequest(r.WithContext(ctx))
		err := next(c) // accessLog below has written the answer already
		status := c.Response().Status
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(status))
		}
		return err
	}
}
