package telemetry

import (
	"context"
	"fmt"
	"iter"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"

	"github.com/clearance-dev/clearance/authz"
)

// engine is an authz.Engine that counts, times and traces every call of the one
// it wraps. It passes the optional interfaces the planner and the flow check
// look for (ClearanceModeled, ChangeLister, UserLister, Model) through;
// Revisioned only where the wrapped engine has it (revEngine), because a
// revision that is always "unknown" would switch the decision cache off.
type engine struct {
	inner authz.Engine
	t     *Telemetry
	// Per-method instruments, curried once: a call costs no label lookup.
	obs   map[string]prometheus.Observer
	calls map[string]map[string]prometheus.Counter
}

type revEngine struct {
	*engine
	rev authz.Revisioned
}

func (e *revEngine) Revision(ctx context.Context) (authz.Revision, error) {
	return e.rev.Revision(ctx)
}

// Engine wraps e with metrics (clearance_authz_*) and spans (authz.<Method>).
func (m *Telemetry) Engine(e authz.Engine) authz.Engine {
	w := &engine{inner: e, t: m, obs: map[string]prometheus.Observer{}, calls: map[string]map[string]prometheus.Counter{}}
	for _, method := range []string{MethodCheck, MethodBatchCheck, MethodListObjects, MethodListUsers, MethodWrite, MethodRead} {
		w.obs[method] = m.engineDuration.WithLabelValues(method)
		w.calls[method] = map[string]prometheus.Counter{}
		for _, o := range []string{OutcomeOK, OutcomeTruncated, OutcomeUnavailable, OutcomeCanceled, OutcomeTimeout, OutcomeInvalid, OutcomeNotFound, OutcomeError} {
			w.calls[method][o] = m.engineCalls.WithLabelValues(method, o)
		}
	}
	if r, ok := e.(authz.Revisioned); ok {
		return &revEngine{engine: w, rev: r}
	}
	return w
}

// done records one finished call.
func (e *engine) done(method string, start time.Time, err error) {
	e.obs[method].Observe(seconds(start))
	e.calls[method][Outcome(err)].Inc()
}

func (e *engine) Write(ctx context.Context, writes, deletes []authz.Tuple) (err error) {
	start := time.Now()
	ctx, span := e.t.start(ctx, "authz.Write", attribute.Int("authz.writes", len(writes)), attribute.Int("authz.deletes", len(deletes)))
	defer func() { e.done(MethodWrite, start, err); end(span, err) }()
	return e.inner.Write(ctx, writes, deletes)
}

func (e *engine) Check(ctx context.Context, q authz.Query, c authz.Check) (ok bool, err error) {
	start := time.Now()
	ctx, span := e.t.start(ctx, "authz.Check", attribute.String("authz.relation", c.Relation))
	defer func() { e.done(MethodCheck, start, err); end(span, err) }()
	return e.inner.Check(ctx, q, c)
}

func (e *engine) BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) (res []bool, err error) {
	start := time.Now()
	ctx, span := e.t.start(ctx, "authz.BatchCheck", attribute.Int("authz.checks", len(checks)),
		attribute.String("authz.consistency", q.Consistency.String()))
	defer func() {
		e.t.batchSize.Observe(float64(len(checks)))
		e.done(MethodBatchCheck, start, err)
		if span.IsRecording() && err == nil {
			denied := 0
			for _, ok := range res {
				if !ok {
					denied++
				}
			}
			span.SetAttributes(attribute.Int("authz.denied", denied))
		}
		end(span, err)
	}()
	return e.inner.BatchCheck(ctx, q, checks)
}

// ListObjects times the stream from the first pull to its end (or the
// consumer's break): that is the cost a search waits for.
func (e *engine) ListObjects(ctx context.Context, q authz.Query, user, relation, objectType string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		start := time.Now()
		ctx, span := e.t.start(ctx, "authz.ListObjects", attribute.String("authz.relation", relation), attribute.String("authz.object_type", objectType))
		var err error
		n := 0
		defer func() {
			e.t.listed.WithLabelValues(MethodListObjects).Add(float64(n))
			e.done(MethodListObjects, start, err)
			if span.IsRecording() {
				span.SetAttributes(attribute.Int("authz.objects", n))
			}
			end(span, err)
		}()
		for id, ierr := range e.inner.ListObjects(ctx, q, user, relation, objectType) {
			if ierr != nil {
				err = ierr
			} else {
				n++
			}
			if !yield(id, ierr) {
				return
			}
		}
	}
}

func (e *engine) Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	return func(yield func(authz.Tuple, error) bool) {
		start := time.Now()
		ctx, span := e.t.start(ctx, "authz.Read")
		var err error
		defer func() { e.done(MethodRead, start, err); end(span, err) }()
		for t, ierr := range e.inner.Read(ctx, f) {
			if ierr != nil {
				err = ierr
			}
			if !yield(t, ierr) {
				return
			}
		}
	}
}

func (e *engine) ListUsers(ctx context.Context, q authz.Query, object, relation, userType string) (users []string, err error) {
	l, ok := e.inner.(authz.UserLister)
	if !ok {
		return nil, fmt.Errorf("ListUsers is not supported: %w", authz.ErrUnavailable)
	}
	start := time.Now()
	ctx, span := e.t.start(ctx, "authz.ListUsers", attribute.String("authz.relation", relation), attribute.String("authz.user_type", userType))
	defer func() {
		e.t.listed.WithLabelValues(MethodListUsers).Add(float64(len(users)))
		e.done(MethodListUsers, start, err)
		end(span, err)
	}()
	return l.ListUsers(ctx, q, object, relation, userType)
}

func (e *engine) ModelID() string { return e.inner.ModelID() }
func (e *engine) Close() error    { return e.inner.Close() }

// ClearanceModel passes authz.ClearanceModeled through (false when absent, as
// the planner assumes for an engine without it).
func (e *engine) ClearanceModel() bool {
	m, ok := e.inner.(authz.ClearanceModeled)
	return ok && m.ClearanceModel()
}

// ChangedObjects passes authz.ChangeLister through ("cannot say" when absent).
func (e *engine) ChangedObjects(from, to authz.Revision) ([]string, bool) {
	if c, ok := e.inner.(authz.ChangeLister); ok {
		return c.ChangedObjects(from, to)
	}
	return nil, false
}

// Model passes the evaluated model through (nil when the engine cannot say).
func (e *engine) Model() *openfgav1.AuthorizationModel {
	if m, ok := e.inner.(interface {
		Model() *openfgav1.AuthorizationModel
	}); ok {
		return m.Model()
	}
	return nil
}

// Unwrap returns the instrumented engine.
func (e *engine) Unwrap() authz.Engine { return e.inner }
