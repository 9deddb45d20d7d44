// Package telemetry is clearance's metrics and tracing: the Prometheus
// collectors of every layer (engine, store, embedder, audit log, planner caches,
// indexer, token verification, build info) on a registry the caller passes, the
// decorators that feed them (an instrumented authz engine, planner store,
// embedder, audit log and authenticator, applied in cmd/clearance, the one place
// that picks backends), the embedded OpenFGA's own metrics under their openfga_
// names, and an OpenTelemetry tracer provider configured from the standard
// OTEL_* environment variables (off unless they ask for an OTLP exporter).
//
// Labels are low-cardinality only: method, outcome, plan, kind, status, path,
// principal kind, reason. Never a tenant, principal, ticket or query, which
// belong in the audit log (and, by id, in traces).
package telemetry

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// Outcomes of a call (label "outcome").
const (
	OutcomeOK          = "ok"
	OutcomeTruncated   = "truncated"
	OutcomeUnavailable = "unavailable"
	OutcomeCanceled    = "canceled"
	OutcomeTimeout     = "timeout"
	OutcomeInvalid     = "invalid"
	OutcomeNotFound    = "not_found"
	OutcomeError       = "error"
)

// Outcome classifies err for the "outcome" label.
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, authz.ErrTruncated):
		return OutcomeTruncated
	case errors.Is(err, context.DeadlineExceeded):
		return OutcomeTimeout
	case errors.Is(err, context.Canceled):
		return OutcomeCanceled
	case errors.Is(err, clearance.ErrNotFound):
		return OutcomeNotFound
	case errors.Is(err, clearance.ErrInvalid):
		return OutcomeInvalid
	case errors.Is(err, clearance.ErrUnavailable):
		return OutcomeUnavailable
	}
	return OutcomeError
}

// Latency buckets in seconds: 250 µs to 10 s. Engine checks on sqlite take a
// few hundred µs, a whole search tens of ms; the tail reaches the deadlines.
var latencyBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Engine methods (label "method").
const (
	MethodCheck       = "Check"
	MethodBatchCheck  = "BatchCheck"
	MethodListObjects = "ListObjects"
	MethodListUsers   = "ListUsers"
	MethodWrite       = "Write"
	MethodRead        = "Read"
)

// Telemetry holds every clearance collector and the tracer of the decorators'
// spans. Build it once per process with New and hand it to the decorators;
// nothing here is global.
type Telemetry struct {
	reg    prometheus.Registerer
	tracer trace.Tracer

	engineCalls    *prometheus.CounterVec   // method, outcome
	engineDuration *prometheus.HistogramVec // method
	batchSize      prometheus.Histogram
	listed         *prometheus.CounterVec // method

	storeSearches *prometheus.CounterVec   // plan, outcome
	storeDuration *prometheus.HistogramVec // plan
	storeGets     *prometheus.CounterVec   // outcome
	storeGetDur   prometheus.Histogram

	embedCalls    *prometheus.CounterVec // outcome
	embedDuration prometheus.Histogram

	answers      *prometheus.CounterVec   // kind, status, path, principal_kind
	stages       *prometheus.HistogramVec // kind, stage
	candidates   *prometheus.CounterVec   // kind, decision
	rounds       prometheus.Histogram
	auditAppends *prometheus.CounterVec // outcome
	auditLatency prometheus.Histogram
	auditBatch   prometheus.Histogram
	auditFlushes *prometheus.CounterVec // outcome

	authFailures *prometheus.CounterVec // reason
	authDuration prometheus.Histogram

	indexRuns        *prometheus.CounterVec // trigger, outcome
	indexRows        *prometheus.CounterVec // trigger, outcome
	indexDuration    *prometheus.HistogramVec
	indexLastSuccess *prometheus.GaugeVec // trigger
	indexLastCommit  *prometheus.GaugeVec // trigger
}

// New creates the collectors and registers them (and build info) on reg; spans
// go to tp (nil: none). version is the binary's version (main.version).
func New(reg prometheus.Registerer, tp trace.TracerProvider, version string) *Telemetry {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	m := &Telemetry{reg: reg, tracer: tp.Tracer(TracerName)}
	m.engineCalls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_authz_requests_total",
		Help: "Relationship-engine calls by method and outcome (ok, truncated, unavailable, timeout, canceled, invalid, error)."},
		[]string{"method", "outcome"})
	m.engineDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "clearance_authz_request_duration_seconds",
		Help: "Relationship-engine call latency by method (a ListObjects until its stream ends).", Buckets: latencyBuckets},
		[]string{"method"})
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clearance_authz_batch_check_size",
		Help: "Checks per BatchCheck call.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)})
	m.listed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_authz_listed_total",
		Help: "Objects (ListObjects) or users (ListUsers) the engine listed."}, []string{"method"})

	m.storeSearches = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_store_searches_total",
		Help: "Vector-store searches (one per planner round) by plan (exact, hnsw; none on error) and outcome."},
		[]string{"plan", "outcome"})
	m.storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "clearance_store_search_duration_seconds",
		Help: "Vector-store search latency by plan.", Buckets: latencyBuckets}, []string{"plan"})
	m.storeGets = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_store_gets_total",
		Help: "Ticket reads from the vector store by outcome (not_found counts unknown ids)."}, []string{"outcome"})
	m.storeGetDur = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clearance_store_get_duration_seconds",
		Help: "Ticket read latency from the vector store.", Buckets: latencyBuckets})

	m.embedCalls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_embed_requests_total",
		Help: "Query embeddings by outcome."}, []string{"outcome"})
	m.embedDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clearance_embed_duration_seconds",
		Help: "Query embedding latency.", Buckets: latencyBuckets})

	m.answers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_answers_total",
		Help: "Audited read-path answers by kind (search, mcp_search, ticket, mcp_ticket, flow_check, grant, revoke), status (complete, exhausted, partial, error), pre-filter path and principal kind."},
		[]string{"kind", "status", "path", "principal_kind"})
	m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "clearance_answer_stage_duration_seconds",
		Help:    "Latency of each stage of an audited answer (prefilter, embed, search, check, total, ...), as recorded in its audit record.",
		Buckets: latencyBuckets}, []string{"kind", "stage"})
	m.candidates = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_candidates_total",
		Help: "Store candidates of audited answers: fetched, checked (by the engine or the decision cache), denied (by the post-filter), cached (decisions from the decision cache)."},
		[]string{"kind", "stage"})
	m.rounds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clearance_search_rounds",
		Help: "Store rounds per search.", Buckets: []float64{0, 1, 2, 3, 4, 5, 6, 8, 12}})
	m.auditAppends = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_audit_appends_total",
		Help: "Audit record appends by outcome; anything but ok failed a request closed (unless fail-open)."}, []string{"outcome"})
	m.auditLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clearance_audit_append_duration_seconds",
		Help: "Audit append latency (queueing for the group commit, write and fsync).", Buckets: latencyBuckets})
	m.auditBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clearance_audit_flush_records",
		Help: "Records per group-commit flush of the audit log.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)})
	m.auditFlushes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_audit_flushes_total",
		Help: "Group-commit flushes of the audit log by outcome (error: the disk or database failed)."}, []string{"outcome"})

	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_auth_failures_total",
		Help: "Refused bearer credentials by reason."}, []string{"reason"})
	m.authDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clearance_auth_verify_duration_seconds",
		Help: "Credential verification latency (JWT signature and claims, or API-key lookup).", Buckets: latencyBuckets})

	m.indexRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_indexer_runs_total",
		Help: "Indexer runs by trigger (push: POST /v1/tickets; background: --index-source) and outcome."}, []string{"trigger", "outcome"})
	m.indexRows = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_indexer_rows_total",
		Help: "Indexed rows by trigger and outcome (embedded, unchanged, deleted, moved, failed)."}, []string{"trigger", "outcome"})
	m.indexDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "clearance_indexer_run_duration_seconds",
		Help: "Indexer run latency by trigger.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 10)}, []string{"trigger"})
	m.indexLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clearance_indexer_last_success_timestamp_seconds",
		Help: "Unix time of the last indexer run that finished without error, by trigger."}, []string{"trigger"})
	m.indexLastCommit = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clearance_indexer_watermark_timestamp_seconds",
		Help: "Unix time the indexer last saved its source watermark (time() minus it is the watermark lag)."}, []string{"trigger"})

	reg.MustRegister(m.engineCalls, m.engineDuration, m.batchSize, m.listed,
		m.storeSearches, m.storeDuration, m.storeGets, m.storeGetDur, m.embedCalls, m.embedDuration,
		m.answers, m.stages, m.candidates, m.rounds, m.auditAppends, m.auditLatency, m.auditBatch, m.auditFlushes,
		m.authFailures, m.authDuration,
		m.indexRuns, m.indexRows, m.indexDuration, m.indexLastSuccess, m.indexLastCommit,
		buildInfo(version),
		// The runtime's and the process's own (go_*, process_*).
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds more collectors (the planner's cache counters) to the registry.
func (m *Telemetry) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// buildInfo is the constant clearance_build_info gauge.
func buildInfo(version string) prometheus.Collector {
	revision, modified := "unknown", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if modified {
		revision += "-dirty"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "clearance_build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version(), "revision": revision}})
	g.Set(1)
	return g
}

func seconds(start time.Time) float64 { return time.Since(start).Seconds() }
