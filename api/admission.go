package api

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// Limits bound the read path: POST /v1/search, GET /v1/tickets/{id} and MCP
// tools/call. Each of those costs engine checks, a store scan and an audit
// record, so they pass a per-principal rate limit and then admission control
// (a concurrency limit with a bounded, timed wait queue) before they run.
// The zero value gives the defaults; see the fields.
type Limits struct {
	// MaxConcurrent is how many read-path requests run at once (default
	// 2 x GOMAXPROCS, at least 4): their work is CPU in this process (engine on
	// sqlite, embedded store), so more at once only queue inside.
	MaxConcurrent int
	// MaxQueue is how many more may wait for a slot (default 8 x MaxConcurrent;
	// negative: none). Past it the answer is 503 at once.
	MaxQueue int
	// QueueTimeout is the longest wait for a slot (default 3 s); then 503.
	QueueTimeout time.Duration
	// PerPrincipal is how many read-path requests one principal may have
	// running or waiting at once (0: no limit of its own). Past it the answer
	// is 429: one caller's burst cannot take every slot and the queue from
	// everyone else.
	PerPrincipal int
	// Rate is each principal's sustained read-path rate in requests per second
	// (0: no rate limit), with Burst requests at once (default 2 x Rate, at
	// least 1). Past it the answer is 429. The policies (Rate, PerPrincipal)
	// are off in the zero value; cmd/clearance turns them on by default.
	Rate  float64
	Burst int
	// MaxPrincipals bounds the rate-limit buckets kept (default 10,000); the
	// least recently seen principal's bucket is dropped first.
	MaxPrincipals int
	// Timeout is the deadline of one admitted read-path request, the wait in
	// the queue included (default 10 s): past it the work is cancelled.
	Timeout time.Duration
}

// Defaults of Limits.
const (
	DefaultQueueTimeout  = 3 * time.Second
	DefaultRate          = 10
	DefaultMaxPrincipals = 10_000
	DefaultSearchTimeout = 10 * time.Second
	// overloadRetry is the Retry-After of a 503 for saturation: long enough that
	// a client's retry finds the burst over, short enough to stay interactive.
	overloadRetry = time.Second
)

// DefaultMaxConcurrent is Limits.MaxConcurrent's default on this machine.
func DefaultMaxConcurrent() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// DefaultMaxConcurrentWrites is the write path's MaxConcurrent default: a write
// holds an engine transaction and a store transaction (and embeds its tickets),
// so a few at once saturate the datastores; more only queue inside them.
func DefaultMaxConcurrentWrites() int { return max(2, runtime.GOMAXPROCS(0)) }

// writeLimits fills the write path's Limits: no rate limit and no limit per
// principal unless set (an index job sends batches back to back and in
// parallel; its excess waits in the queue rather than being refused), and the
// request's own deadline.
func writeLimits(l Limits, requestTimeout time.Duration) Limits {
	if l.MaxConcurrent <= 0 {
		l.MaxConcurrent = DefaultMaxConcurrentWrites()
	}
	l.Rate = 0
	if l.Timeout <= 0 {
		l.Timeout = requestTimeout
	}
	return l
}

func (l *Limits) defaults() {
	if l.MaxConcurrent <= 0 {
		l.MaxConcurrent = DefaultMaxConcurrent()
	}
	switch {
	case l.MaxQueue == 0:
		l.MaxQueue = 8 * l.MaxConcurrent
	case l.MaxQueue < 0:
		l.MaxQueue = 0
	}
	if l.PerPrincipal <= 0 {
		l.PerPrincipal = l.MaxConcurrent + l.MaxQueue // never the binding limit
	}
	if l.QueueTimeout <= 0 {
		l.QueueTimeout = DefaultQueueTimeout
	}
	if l.Burst <= 0 {
		l.Burst = max(1, int(2*l.Rate))
	}
	if l.MaxPrincipals <= 0 {
		l.MaxPrincipals = DefaultMaxPrincipals
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultSearchTimeout
	}
}

// admission is the read path's gate: rate limit, then a slot.
type admission struct {
	lim     Limits
	what    string // "reads" or "writes", for the 503's detail
	slots   chan struct{}
	waiting atomic.Int64
	rates   *rateLimiter // nil: no rate limit

	mu     sync.Mutex
	active map[string]int // principal key -> requests running or waiting; no zero entries

	// Metrics (nil in tests that build an admission alone).
	rejected *prometheus.CounterVec // status, reason
	waited   prometheus.Histogram
}

// Rejection reasons (label "reason" of clearance_admission_rejections_total).
const (
	rejectRate      = "rate_limit"      // 429: the principal's rate
	rejectPrincipal = "principal_limit" // 429: the principal's running + waiting
	rejectQueueFull = "queue_full"      // 503: no room in the wait queue
	rejectTimeout   = "queue_timeout"   // 503: waited QueueTimeout for a slot
	rejectCanceled  = "canceled"        // the request ended while it waited
)

// metrics registers the admission's collectors on reg, labelled by class
// ("reads" or "writes": each path has its own slots and queue).
func (a *admission) metrics(reg prometheus.Registerer) {
	class := prometheus.Labels{"class": a.what}
	a.rejected = registerOrExisting(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clearance_admission_rejections_total",
		Help:        "Requests refused by admission control, by class (reads, writes), HTTP status (429, 503) and reason (rate_limit, principal_limit, queue_full, queue_timeout, canceled).",
		ConstLabels: class}, []string{"status", "reason"}))
	a.waited = registerOrExisting(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clearance_admission_wait_seconds",
		Help: "Time admitted requests waited for a slot (0 when one was free), by class.", Buckets: latencyBuckets, ConstLabels: class}))
	registerOrExisting(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clearance_admission_queue_depth",
		Help: "Requests waiting for a slot now, by class.", ConstLabels: class}, func() float64 { return float64(a.waiting.Load()) }))
	registerOrExisting(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clearance_admission_in_flight",
		Help: "Requests holding a slot now, by class.", ConstLabels: class}, func() float64 { return float64(len(a.slots)) }))
	registerOrExisting(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clearance_admission_slots",
		Help: "Slots (Limits.MaxConcurrent), by class.", ConstLabels: class}, func() float64 { return float64(cap(a.slots)) }))
}

func (a *admission) reject(reason string, err *RetryAfterError) *RetryAfterError {
	if a.rejected != nil {
		status := "503"
		if errors.Is(err, clearance.ErrRateLimited) {
			status = "429"
		}
		a.rejected.WithLabelValues(status, reason).Inc()
	}
	return err
}

func (a *admission) admitted(start time.Time) {
	if a.waited != nil {
		a.waited.Observe(time.Since(start).Seconds())
	}
}

func newAdmission(l Limits, what string) *admission {
	l.defaults()
	a := &admission{lim: l, what: what, slots: make(chan struct{}, l.MaxConcurrent), active: map[string]int{}}
	if l.Rate > 0 {
		a.rates = newRateLimiter(rate.Limit(l.Rate), l.Burst, l.MaxPrincipals)
	}
	return a
}

// admit charges p's rate and waits for a slot. On success it returns the
// context the work must run under (bounded by Limits.Timeout from now) and
// the function that frees the slot; otherwise a *RetryAfterError.
func (a *admission) admit(ctx context.Context, p authz.Principal) (context.Context, func(), error) {
	key := p.String()
	if a.rates != nil {
		if wait := a.rates.take(key); wait > 0 {
			return nil, nil, a.reject(rejectRate, &RetryAfterError{Kind: clearance.ErrRateLimited, After: wait,
				Detail: fmt.Sprintf("rate limit of %g requests per second (burst %d) exceeded for this principal", a.lim.Rate, a.lim.Burst)})
		}
	}
	if !a.enter(key) {
		return nil, nil, a.reject(rejectPrincipal, &RetryAfterError{Kind: clearance.ErrRateLimited, After: overloadRetry,
			Detail: fmt.Sprintf("this principal already has %d requests running or waiting (the limit per principal)", a.lim.PerPrincipal)})
	}
	ctx, cancel := context.WithTimeout(ctx, a.lim.Timeout)
	done := func() {
		cancel()
		a.leave(key)
	}
	release := func() {
		<-a.slots
		done()
	}
	start := time.Now()
	select {
	case a.slots <- struct{}{}:
		a.admitted(start)
		return ctx, release, nil
	default:
	}
	saturated := &RetryAfterError{Kind: clearance.ErrOverloaded, After: overloadRetry,
		Detail: fmt.Sprintf("the server is saturated (%d %s running, %d waiting)", a.lim.MaxConcurrent, a.what, a.lim.MaxQueue)}
	if a.waiting.Add(1) > int64(a.lim.MaxQueue) {
		a.waiting.Add(-1)
		done()
		return nil, nil, a.reject(rejectQueueFull, saturated)
	}
	defer a.waiting.Add(-1)
	t := time.NewTimer(a.lim.QueueTimeout)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}: // blocked senders are served in arrival order
		a.admitted(start)
		return ctx, release, nil
	case <-t.C:
		done()
		return nil, nil, a.reject(rejectTimeout, saturated)
	case <-ctx.Done(): // the request's own deadline, or the client left
	}
	done()
	return nil, nil, a.reject(rejectCanceled, saturated)
}

// enter counts one more request of key unless it has PerPrincipal already.
func (a *admission) enter(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active[key] >= a.lim.PerPrincipal {
		return false
	}
	a.active[key]++
	return true
}

// leave undoes enter; the map holds only principals with requests, so it is
// bounded by MaxConcurrent + MaxQueue.
func (a *admission) leave(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active[key]--; a.active[key] <= 0 {
		delete(a.active, key)
	}
}

// rateLimiter holds one token bucket per principal key, at most max of them;
// the least recently used bucket goes first. A principal whose bucket was
// dropped starts again with a full one: max must exceed the principals active
// within a few burst windows, which 10,000 does for any tenant count this
// service is built for.
type rateLimiter struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	max     int
	buckets map[string]*list.Element // key -> element holding *bucket
	lru     *list.List               // front: most recently used
}

type bucket struct {
	key string
	lim *rate.Limiter
}

func newRateLimiter(limit rate.Limit, burst, maxKeys int) *rateLimiter {
	return &rateLimiter{limit: limit, burst: burst, max: maxKeys, buckets: map[string]*list.Element{}, lru: list.New()}
}

// take spends one token of key's bucket and returns 0, or returns how long
// until a token is there (spending nothing).
func (r *rateLimiter) take(key string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.buckets[key]
	if ok {
		r.lru.MoveToFront(el)
	} else {
		el = r.lru.PushFront(&bucket{key: key, lim: rate.NewLimiter(r.limit, r.burst)})
		r.buckets[key] = el
		for r.lru.Len() > r.max {
			old := r.lru.Back()
			r.lru.Remove(old)
			delete(r.buckets, old.Value.(*bucket).key)
		}
	}
	res := el.Value.(*bucket).lim.Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return d
	}
	return 0
}

// len is the number of buckets kept (tests).
func (r *rateLimiter) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len()
}
