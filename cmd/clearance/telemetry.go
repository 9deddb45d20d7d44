package main

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"

	"github.com/clearance-dev/clearance/internal/telemetry"
)

// openTelemetry builds the server's metrics registry and tracer provider
// before any backend opens, so the backends can be wrapped as they open. Spans
// are exported only when the OTEL_* variables ask for it (TracingFromEnv);
// cfg.tracer (tests) takes precedence.
func (a *app) openTelemetry(ctx context.Context) error {
	a.metrics = prometheus.NewRegistry()
	tp := a.cfg.tracer
	if tp == nil {
		tc, err := telemetry.TracingFromEnv(os.Getenv)
		if err != nil {
			return err
		}
		tc.ServiceVersion = version
		p, shutdown, err := telemetry.NewTracerProvider(ctx, tc)
		if err != nil {
			return err
		}
		if tc.Exporter == "otlp" {
			tp = p
			a.closers = append(a.closers, func() error {
				// Flush what is queued, but an unreachable collector must not
				// hold up the process's exit.
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				return shutdown(ctx)
			})
			a.log.Info("tracing on: OTLP export", "protocol", tc.Protocol)
			// Export failures (collector down) are reported through the SDK's
			// process-wide handler, by default the standard logger in another
			// format: send them to our log instead.
			elog := a.log.With("component", "otel")
			otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { elog.Warn("trace export", "err", err) }))
		}
	}
	a.tracer = tp
	a.tel = telemetry.New(a.metrics, tp, version)
	return nil
}

// openFGAMetrics are the embedded OpenFGA's own metrics, served at /metrics
// under the openfga_ names OpenFGA gives them. OpenFGA registers them on the
// default registry when its packages load; only those families are taken from
// it (its Go and process collectors would duplicate ours). A gathering error
// there keeps what was gathered and is not passed on: it would turn the whole
// scrape, ours included, into a 500.
func openFGAMetrics() prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, _ := prometheus.DefaultGatherer.Gather()
		out := mfs[:0]
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "openfga_") {
				out = append(out, mf)
			}
		}
		return out, nil
	})
}
