package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/clearance-dev/clearance/audit"
)

type auditLog struct {
	inner audit.Log
	t     *Telemetry
}

// AuditLog wraps an audit log. Every record passes through here once, after the
// planner (or the flow check, or a grant) has filled it, so the record is also
// where the answer metrics come from: kind, status, path and principal kind,
// candidates fetched, checked and denied, stage latencies. The wrapper also
// stamps the record with the request's trace id (Record.TraceID), inside the
// hashed record, so an auditor can go from a decision to its trace.
func (m *Telemetry) AuditLog(l audit.Log) audit.Log { return &auditLog{inner: l, t: m} }

func (a *auditLog) Append(ctx context.Context, r *audit.Record) (err error) {
	if r != nil && r.TraceID == "" {
		r.TraceID = TraceID(ctx)
	}
	start := time.Now()
	ctx, span := a.t.start(ctx, "audit.Append")
	err = a.inner.Append(ctx, r)
	a.t.auditLatency.Observe(seconds(start))
	a.t.auditAppends.WithLabelValues(Outcome(err)).Inc()
	if span.IsRecording() && r != nil {
		span.SetAttributes(attribute.String("audit.kind", r.Kind), attribute.String("audit.id", r.ID))
	}
	end(span, err)
	if r != nil {
		a.t.observeRecord(r, err)
	}
	return err
}

// observeRecord counts one audited answer.
func (m *Telemetry) observeRecord(r *audit.Record, appendErr error) {
	status := r.Status
	if appendErr != nil {
		status = "error" // the caller failed the request closed
	}
	m.answers.WithLabelValues(r.Kind, label(status), label(r.Plan.Path), label(string(r.Principal.Kind))).Inc()
	if r.Plan.Rounds > 0 && (r.Kind == "search" || r.Kind == "mcp_search") {
		m.rounds.Observe(float64(r.Plan.Rounds))
	}
	for _, c := range [...]struct {
		stage string
		n     int
	}{{"fetched", r.Plan.Fetched}, {"checked", r.Plan.Checked}, {"denied", r.Plan.Denied}, {"cached", r.Plan.CachedDecisions}} {
		if c.n > 0 {
			m.candidates.WithLabelValues(r.Kind, c.stage).Add(float64(c.n))
		}
	}
	for stage, us := range r.Latency {
		m.stages.WithLabelValues(r.Kind, stage).Observe(float64(us) / 1e6)
	}
}

// label keeps empty label values readable in PromQL.
func label(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// FlushObserver returns the hook the audit backends call after each group
// commit (records in the batch, how long the write took, its error).
func (m *Telemetry) FlushObserver() audit.FlushObserver {
	return func(records int, _ time.Duration, err error) {
		m.auditBatch.Observe(float64(records))
		m.auditFlushes.WithLabelValues(Outcome(err)).Inc()
	}
}
