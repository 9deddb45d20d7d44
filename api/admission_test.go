package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
)

// heldPlanner is a fault injector: every search blocks until release is
// closed (or its context ends) and records whether its context had a deadline.
type heldPlanner struct {
	started  chan string // the query of each search that started
	release  chan struct{}
	mu       sync.Mutex
	deadline []time.Duration // time left on each search's context when it started
}

func newHeldPlanner() *heldPlanner {
	return &heldPlanner{started: make(chan string, 100), release: make(chan struct{})}
}

func (h *heldPlanner) Search(ctx context.Context, _ authz.Principal, r filter.Request) (filter.Response, error) {
	if d, ok := ctx.Deadline(); ok {
		h.mu.Lock()
		h.deadline = append(h.deadline, time.Until(d))
		h.mu.Unlock()
	}
	h.started <- r.Query
	select {
	case <-h.release:
		return filter.Response{Status: filter.Complete}, nil
	case <-ctx.Done():
		return filter.Response{}, fmt.Errorf("held search: %w: %w", clearance.ErrUnavailable, ctx.Err())
	}
}

func (h *heldPlanner) Get(context.Context, authz.Principal, string) (filter.TicketResponse, error) {
	return filter.TicketResponse{}, clearance.ErrNotFound
}

func limitServer(t *testing.T, l Limits) (string, *heldPlanner) {
	t.Helper()
	h := newHeldPlanner()
	srv := New(Config{Limits: l}, Deps{
		Auth: staticAuth{
			"anne": {Kind: authz.KindUser, Tenant: "acme", User: "anne", Scopes: []string{ScopeTicketsRead}},
			"bob":  {Kind: authz.KindUser, Tenant: "acme", User: "bob", Scopes: []string{ScopeTicketsRead}},
		},
		Areas: []Area{&SearchAPI{Planner: h}},
	})
	return serveHandler(t, srv.Handler()), h
}

// searchAsync starts POST /v1/search as who and returns its answer later.
func searchAsync(t *testing.T, base, who, query string) <-chan *http.Response {
	out := make(chan *http.Response, 1)
	go func() {
		resp, _ := hsendNoFatal(http.MethodPost, base+"/v1/search", fmt.Sprintf(`{"query":%q}`, query),
			"Authorization", "Bearer "+who, "Content-Type", "application/json")
		out <- resp
	}()
	return out
}

func hsendNoFatal(method, url, body string, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

// overloadProblem checks an overload answer: status, problem type and a
// Retry-After of at least one second.
func overloadProblem(t *testing.T, resp *http.Response, body []byte, status int, typ string) {
	t.Helper()
	p := problem(t, resp, body, status)
	if p.Type != problemBase+typ {
		t.Errorf("problem type %q, want %q", p.Type, problemBase+typ)
	}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", resp.Header.Get("Retry-After"))
	}
	if p.Detail == "" {
		t.Error("overload problem without detail")
	}
}

// TestAdmissionSaturated: with every slot busy and the queue full the answer
// is 503 (type overloaded) with Retry-After at once; a queued request that
// waits past the queue timeout gets the same; a slot freed admits the next.
func TestAdmissionSaturated(t *testing.T) {
	base, h := limitServer(t, Limits{MaxConcurrent: 1, MaxQueue: 1, QueueTimeout: 300 * time.Millisecond})
	running := searchAsync(t, base, "anne", "running")
	<-h.started
	queued := searchAsync(t, base, "bob", "queued")
	time.Sleep(50 * time.Millisecond) // let it take the queue's one place

	resp, body := hsend(t, http.MethodPost, base+"/v1/search", `{"query":"refused"}`, "Authorization", "Bearer bob", "Content-Type", "application/json")
	overloadProblem(t, resp, body, http.StatusServiceUnavailable, "overloaded")

	// The queued one waits out the queue timeout: 503 too.
	if r := <-queued; r == nil || r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("queued search: %+v", r)
	}
	close(h.release)
	if r := <-running; r == nil || r.StatusCode != http.StatusOK {
		t.Fatalf("running search: %+v", r)
	}
	// Free again: the next search runs.
	resp, body = hsend(t, http.MethodPost, base+"/v1/search", `{"query":"after"}`, "Authorization", "Bearer bob", "Content-Type", "application/json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after the load: %d %s", resp.StatusCode, body)
	}
	// Both refusals are counted by reason; the queue is empty again.
	_, metrics := hget(t, base+"/metrics")
	for _, want := range []string{
		`clearance_admission_rejections_total{class="reads",reason="queue_full",status="503"} 1`,
		`clearance_admission_rejections_total{class="reads",reason="queue_timeout",status="503"} 1`,
		`clearance_admission_queue_depth{class="reads"} 0`,
		`clearance_admission_slots{class="reads"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestAdmissionPerPrincipal: a principal at its limit of requests in flight
// gets 429 (type rate-limited) while another principal is still admitted.
func TestAdmissionPerPrincipal(t *testing.T) {
	base, h := limitServer(t, Limits{MaxConcurrent: 4, PerPrincipal: 1})
	first := searchAsync(t, base, "anne", "first")
	<-h.started
	resp, body := hsend(t, http.MethodPost, base+"/v1/search", `{"query":"second"}`, "Authorization", "Bearer anne", "Content-Type", "application/json")
	overloadProblem(t, resp, body, http.StatusTooManyRequests, "rate-limited")
	other := searchAsync(t, base, "bob", "other")
	if q := <-h.started; q != "other" {
		t.Fatalf("started %q, want bob's search", q)
	}
	close(h.release)
	for _, c := range []<-chan *http.Response{first, other} {
		if r := <-c; r == nil || r.StatusCode != http.StatusOK {
			t.Fatalf("admitted search: %+v", r)
		}
	}
}

// TestAdmissionRateLimit: past its burst a principal gets 429 with the wait
// until its next token in Retry-After; other principals have their own bucket.
func TestAdmissionRateLimit(t *testing.T) {
	base, h := limitServer(t, Limits{Rate: 0.2, Burst: 2})
	close(h.release)
	for i := range 2 {
		resp, body := hsend(t, http.MethodPost, base+"/v1/search", `{"query":"q"}`, "Authorization", "Bearer anne", "Content-Type", "application/json")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("search %d within the burst: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := hsend(t, http.MethodPost, base+"/v1/search", `{"query":"q"}`, "Authorization", "Bearer anne", "Content-Type", "application/json")
	overloadProblem(t, resp, body, http.StatusTooManyRequests, "rate-limited")
	if n, _ := strconv.Atoi(resp.Header.Get("Retry-After")); n < 4 || n > 5 {
		t.Errorf("Retry-After %q; at 0.2/s the next token is 5 s away", resp.Header.Get("Retry-After"))
	}
	// Ticket reads are on the same budget.
	resp, body = hget(t, base+"/v1/tickets/T-1", "Authorization", "Bearer anne")
	overloadProblem(t, resp, body, http.StatusTooManyRequests, "rate-limited")
	resp, body = hsend(t, http.MethodPost, base+"/v1/search", `{"query":"q"}`, "Authorization", "Bearer bob", "Content-Type", "application/json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another principal: %d %s", resp.StatusCode, body)
	}
}

// TestAdmissionDeadline: an admitted search runs under the read-path
// deadline, so a search that would hang ends with 503 at it.
func TestAdmissionDeadline(t *testing.T) {
	base, h := limitServer(t, Limits{Timeout: 200 * time.Millisecond})
	resp, body := hsend(t, http.MethodPost, base+"/v1/search", `{"query":"hangs"}`, "Authorization", "Bearer anne", "Content-Type", "application/json")
	problem(t, resp, body, http.StatusServiceUnavailable)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.deadline) != 1 || h.deadline[0] > 200*time.Millisecond || h.deadline[0] <= 0 {
		t.Fatalf("deadlines seen by the planner: %v, want one of at most 200ms", h.deadline)
	}
}

// TestRateLimiterBounded: the bucket map never holds more than its bound.
func TestRateLimiterBounded(t *testing.T) {
	r := newRateLimiter(1, 1, 3)
	for i := range 100 {
		r.take(fmt.Sprint("principal-", i))
	}
	if n := r.len(); n != 3 {
		t.Fatalf("%d buckets kept, want 3", n)
	}
	// The most recent principal kept its (spent) bucket.
	if r.take("principal-99") == 0 {
		t.Fatal("principal-99's bucket was dropped")
	}
}

// TestMayCallTool: only a message that names one other method, exactly, skips
// admission; case variants and duplicates of "method" count as calls.
func TestMayCallTool(t *testing.T) {
	for body, want := range map[string]bool{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`:           true,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`:           false,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`:               false,
		`{"jsonrpc":"2.0","id":1,"method":"tools\/call"}`:                      true,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","Method":"initialize"}`: true,
		`{"jsonrpc":"2.0","id":1,"METHOD":"initialize"}`:                       true,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","method":"tools/call"}`: true,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","method":"tools/list"}`: true,
		`{"jsonrpc":"2.0","id":1,"result":{}}`:                                 true,
		`not json`:                                                             true,
		`{"jsonrpc":"2.0","id":1,"method":7}`:                                  true,
	} {
		if got := mayCallTool([]byte(body)); got != want {
			t.Errorf("mayCallTool(%s) = %v, want %v", body, got, want)
		}
	}
}
