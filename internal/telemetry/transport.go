package telemetry

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagatingTransport adds the W3C traceparent of the request's context to
// outgoing requests, so a remote OpenFGA server that traces joins the
// request's trace. Without a span in the context it adds nothing.
type propagatingTransport struct{ next http.RoundTripper }

// PropagatingTransport wraps next (nil: a clone of the default transport).
func PropagatingTransport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &propagatingTransport{next: next}
}

func (t *propagatingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if trace.SpanContextFromContext(r.Context()).IsValid() {
		// RoundTrip must not change the caller's request.
		r = r.Clone(r.Context())
		propagation.TraceContext{}.Inject(r.Context(), propagation.HeaderCarrier(r.Header))
	}
	return t.next.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// wrapped transport.
func (t *propagatingTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
