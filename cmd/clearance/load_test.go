package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/testdata"
)

// The load tests (issue 14, SPEC invariant 8) run the whole server as serve
// does: the embedded engine on sqlite, the embedded store, the durable audit
// log, real HTTP over loopback. They count this process's open descriptors
// (/proc/self/fd) and goroutines against an idle baseline taken after a
// warm-up, so they run on Linux only.

// loadEnv is a running server on the demo org and tokens for it.
type loadEnv struct {
	a      *app
	base   string
	tokens map[string]string // principal label -> bearer token
	client *http.Client
	// queries are the texts searches cycle through (default loadQueries).
	queries []string
}

// startLoadServer starts serve's stack on the demo org; mutate adjusts the
// configuration before start (limits under test).
func startLoadServer(t testing.TB, mutate func(*serveConfig)) *loadEnv {
	t.Helper()
	return startServer(t, mutate, func(ctx context.Context, a *app) (map[string]string, error) {
		if _, err := loadDemoOrg(ctx, a.engine); err != nil {
			return nil, err
		}
		if _, err := a.indexer.Run(ctx, indexer.NewJSONLData("demo", testdata.Tickets, 256)); err != nil {
			return nil, err
		}
		tokens := map[string]string{}
		for _, c := range []struct{ label, sub, act string }{
			{"anne", "anne", ""}, {"bob", "bob", ""}, {"copilot", "anne", "copilot"},
			{"dave", "dave", ""}, {"erin", "erin", ""}, {"frank", "frank", ""},
		} {
			tok, err := a.devToken(c.sub, "acme", c.act, "tickets:read", time.Hour)
			if err != nil {
				return nil, err
			}
			tokens[c.label] = tok
		}
		return tokens, nil
	})
}

// startServer starts serve's stack; load fills its backends and returns the
// bearer tokens of the principals to search as, by label.
func startServer(t testing.TB, mutate func(*serveConfig), load func(context.Context, *app) (map[string]string, error)) *loadEnv {
	t.Helper()
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("counting descriptors needs /proc")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := demoConfig("127.0.0.1:0", t.TempDir())
	// Idle engine connections close after a second instead of 30, so the
	// return to the idle baseline is seen without waiting half a minute.
	cfg.EngineConnIdleTime = time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.resolve(); err != nil {
		t.Fatal(err)
	}
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	a.base = a.publicURL(ln) // the tokens' audience
	tokens, err := load(ctx, a)
	if err != nil {
		ln.Close()
		a.Close()
		t.Fatal(err)
	}
	up := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln, func(base string) error { up <- base; return nil }) }()
	var base string
	select {
	case base = <-up:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	env := &loadEnv{a: a, base: base, tokens: tokens,
		client: &http.Client{Timeout: 2 * cfg.RequestTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	t.Cleanup(func() {
		env.client.CloseIdleConnections()
		cancel()
		<-done
		a.Close()
	})
	return env
}

// answer is one HTTP answer, or the transport error that replaced it.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (e *loadEnv) do(ctx context.Context, method, path, token, contentType string, body []byte) answer {
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if path == "/mcp" {
		req.Header.Set("Accept", "application/json, text/event-stream")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

var loadQueries = []string{"login timeout", "invoice dispute overage", "webhook retries backoff", "certificate expired", "memory leak worker", "dashboard slow"}

func (e *loadEnv) search(ctx context.Context, who string, topK, i int) answer {
	qs := e.queries
	if len(qs) == 0 {
		qs = loadQueries
	}
	body := fmt.Sprintf(`{"query":%q,"top_k":%d}`, qs[i%len(qs)], topK)
	return e.do(ctx, http.MethodPost, "/v1/search", e.tokens[who], "application/json", []byte(body))
}

// overload reports whether a is an overload answer as SPEC invariant 8 wants
// it: 429 or 503 with Retry-After and a problem+json body.
func overload(a answer) bool {
	return (a.status == http.StatusTooManyRequests || a.status == http.StatusServiceUnavailable) &&
		a.header.Get("Retry-After") != "" && strings.HasPrefix(a.header.Get("Content-Type"), "application/problem+json")
}

// tally counts answers by status.
type tally struct {
	mu sync.Mutex
	n  map[int]int
}

func (c *tally) add(status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[int]int{}
	}
	c.n[status]++
}

func (c *tally) get(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[status]
}

func (c *tally) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d ok, %d rate-limited (429), %d saturated (503), %d other", c.n[200], c.n[429], c.n[503], c.n[0])
}

// okOrOverload fails t unless a is a 200 or a well-formed overload answer; it
// reports whether a was a 200 and counts a in c.
func okOrOverload(t *testing.T, c *tally, what string, a answer) bool {
	t.Helper()
	switch {
	case a.err == nil && (a.status == http.StatusOK || overload(a)):
		c.add(a.status)
	default:
		c.add(0)
	}
	switch {
	case a.err != nil:
		t.Errorf("%s: %v", what, a.err)
	case a.status == http.StatusOK:
		return true
	case !overload(a):
		t.Errorf("%s: status %d (Retry-After %q): %.300s", what, a.status, a.header.Get("Retry-After"), a.body)
	}
	return false
}

// openFDs counts this process's open descriptors; when none is left to read
// /proc with, it reports the process limit.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		var lim syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
			return int(lim.Cur)
		}
		return -1
	}
	return len(ents)
}

// usage is the process's descriptors and goroutines at one moment.
type usage struct{ fds, goroutines int }

func (u usage) String() string {
	return fmt.Sprintf("%d descriptors, %d goroutines", u.fds, u.goroutines)
}

func (e *loadEnv) usage(t testing.TB) usage {
	return usage{fds: openFDs(), goroutines: runtime.NumGoroutine()}
}

// baseline warms the server up (every pool at its working size: a few
// concurrent searches of several principals) and returns the idle usage.
func (e *loadEnv) baseline(t *testing.T) usage {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 3 {
				okOrOverload(t, &tally{}, "warm-up search", e.search(ctx, []string{"anne", "bob", "copilot", "dave"}[i%4], 10, i+j))
			}
		})
	}
	wg.Wait()
	e.client.CloseIdleConnections()
	time.Sleep(2500 * time.Millisecond) // idle engine connections close after 1 s
	u := e.usage(t)
	t.Logf("idle baseline: %s", u)
	return u
}

// goroutineSlack allows for the few goroutines that come and go on their own
// (database/sql's connection cleaner, the HTTP server's connection state).
const goroutineSlack = 5

// settled waits (up to a minute) for descriptors to come back within 10% of
// base and goroutines within goroutineSlack of it, and fails t otherwise. It
// asserts a return to baseline, not a time: the wait only ends early.
func (e *loadEnv) settled(t *testing.T, what string, base usage) usage {
	t.Helper()
	e.client.CloseIdleConnections()
	var u usage
	for end := time.Now().Add(time.Minute); ; {
		u = e.usage(t)
		if u.fds <= base.fds+base.fds/10 && u.goroutines <= base.goroutines+goroutineSlack {
			break
		}
		if time.Now().After(end) {
			t.Errorf("after %s: %s; idle baseline %s (want descriptors within 10%%, goroutines within %d)", what, u, base, goroutineSlack)
			return u
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after %s: %s (baseline %s)", what, u, base)
	return u
}

// peak samples usage every 20 ms until stop is closed and returns the maximum.
func (e *loadEnv) peak(t testing.TB, stop <-chan struct{}) <-chan usage {
	out := make(chan usage, 1)
	go func() {
		var p usage
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			u := usage{fds: openFDs(), goroutines: runtime.NumGoroutine()}
			p.fds, p.goroutines = max(p.fds, u.fds), max(p.goroutines, u.goroutines)
			select {
			case <-stop:
				out <- p
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// ordinary runs top_k 10 searches of who, one after another, until stop, and
// fails t on any answer but 200: the server must keep answering others while
// one principal floods it.
func (e *loadEnv) ordinary(t *testing.T, who string, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if a := e.search(context.Background(), who, 10, i); a.err != nil || a.status != http.StatusOK {
				t.Errorf("ordinary search of %s during the load: status %d, err %v: %.300s", who, a.status, a.err, a.body)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return &wg
}

// auditCount counts the audit records of kind since t0.
func (e *loadEnv) auditCount(t *testing.T, kind string, t0 time.Time) int {
	t.Helper()
	page, err := e.a.audit.List(context.Background(), audit.Filter{Since: t0, Limit: audit.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range page.Records {
		if r.Kind == kind {
			n++
		}
	}
	return n
}

// TestLoadMCPBatch is issue 14's first reproduction: one JSON-RPC batch of 300
// tools/call search_tickets with top_k 100 (43 KiB, a plain tickets:read
// token) drove the process to its descriptor limit. The batch must be refused
// before any tool runs, ordinary searches must keep answering, and the
// process must come back to its idle baseline.
func TestLoadMCPBatch(t *testing.T) {
	e := startLoadServer(t, nil)
	base := e.baseline(t)

	var batch []map[string]any
	for i := range 300 {
		batch = append(batch, map[string]any{"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
			"params": map[string]any{"name": "search_tickets", "arguments": map[string]any{"query": loadQueries[i%len(loadQueries)], "top_k": 100}}})
	}
	body, _ := json.Marshal(batch)
	t.Logf("batch: %d calls, %d bytes", len(batch), len(body))

	stop := make(chan struct{})
	peak := e.peak(t, stop)
	others := e.ordinary(t, "bob", stop)
	t0 := time.Now()
	a := e.do(context.Background(), http.MethodPost, "/mcp", e.tokens["anne"], "application/json", body)
	close(stop)
	others.Wait()
	p := <-peak
	t.Logf("batch answered %d in %s; peak %s", a.status, time.Since(t0).Round(time.Millisecond), p)
	if a.err != nil {
		t.Fatalf("batch: %v", a.err)
	}
	// Refused as a whole: HTTP 400 with one JSON-RPC error, not 300 answers.
	if a.status != http.StatusBadRequest {
		t.Errorf("batch: status %d, want 400: %.300s", a.status, a.body)
	}
	var rpcErr struct {
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(a.body, &rpcErr); err != nil || rpcErr.Error.Code != -32600 {
		t.Errorf("batch: want one JSON-RPC error -32600 (invalid request), got %.300s", a.body)
	}
	if n := e.auditCount(t, "mcp_search", t0); n != 0 {
		t.Errorf("batch: %d tool calls ran (audit records of kind mcp_search); want none", n)
	}
	if a := e.search(context.Background(), "anne", 10, 0); a.status != http.StatusOK {
		t.Errorf("search after the batch: status %d: %.300s", a.status, a.body)
	}
	e.settled(t, "the MCP batch", base)
}

// TestLoadSearchBurst is issue 14's second reproduction: 100 concurrent
// POST /v1/search with top_k 100 of one principal held 17,646 descriptors and
// answered 503 to everyone. Every answer must be a 200 or an overload answer
// (429/503 with Retry-After, problem+json), another principal's ordinary
// searches must keep answering 200, and the process must come back to its
// idle baseline.
func TestLoadSearchBurst(t *testing.T) {
	e := startLoadServer(t, nil)
	base := e.baseline(t)

	stop := make(chan struct{})
	peak := e.peak(t, stop)
	others := e.ordinary(t, "bob", stop)
	var answers tally
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range 100 {
		wg.Go(func() { okOrOverload(t, &answers, "burst search", e.search(context.Background(), "anne", 100, i)) })
	}
	wg.Wait()
	close(stop)
	others.Wait()
	p := <-peak
	t.Logf("burst of 100 answered in %s: %s; peak %s", time.Since(t0).Round(time.Millisecond), &answers, p)
	if answers.get(http.StatusOK) == 0 {
		t.Error("burst: no search answered 200")
	}
	if a := e.search(context.Background(), "anne", 10, 0); a.status != http.StatusOK {
		// The burst spent anne's rate budget; the server itself must answer
		// anyone else at once.
		if a := e.search(context.Background(), "dave", 10, 0); a.status != http.StatusOK {
			t.Errorf("search after the burst: status %d: %.300s", a.status, a.body)
		}
	}
	e.settled(t, "the search burst", base)
}

// soakDuration is how long each soak runs: CLEARANCE_SOAK (e.g. 60s, issue 14's
// figure) or 10 s so `make test` stays fast.
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("CLEARANCE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CLEARANCE_SOAK=%q: %v", v, err)
		}
		return d
	}
	return 10 * time.Second
}

// TestLoadSoak: clients searching without pause for the soak duration (8, then
// 32 at once, across six principals, mixed top_k and MCP) leak no descriptors
// and no goroutines: issue 14 saw +300 descriptors after 8 clients for 60 s.
func TestLoadSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	d := soakDuration(t)
	e := startLoadServer(t, nil)
	base := e.baseline(t)
	who := []string{"anne", "bob", "copilot", "dave", "erin", "frank"}
	for _, clients := range []int{8, 32} {
		t.Run(fmt.Sprint(clients), func(t *testing.T) {
			stop := make(chan struct{})
			peak := e.peak(t, stop)
			var answers tally
			var wg sync.WaitGroup
			end := time.Now().Add(d)
			for c := range clients {
				wg.Go(func() {
					for i := 0; time.Now().Before(end); i++ {
						var a answer
						if i%5 == 4 {
							a = e.mcpSearch(context.Background(), who[c%len(who)], 20, i)
						} else {
							a = e.search(context.Background(), who[c%len(who)], []int{5, 10, 50, 100}[i%4], c+i)
						}
						okOrOverload(t, &answers, "soak search", a)
						if t.Failed() {
							return
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			p := <-peak
			t.Logf("%d clients for %s: %s (%.0f ok/s); peak %s", clients, d, &answers, float64(answers.get(http.StatusOK))/d.Seconds(), p)
			if answers.get(http.StatusOK) == 0 {
				t.Error("soak: no search answered 200")
			}
			e.settled(t, fmt.Sprintf("%d clients for %s", clients, d), base)
		})
	}
}

// mcpSearch is one MCP tools/call search_tickets (stateless, no session).
func (e *loadEnv) mcpSearch(ctx context.Context, who string, topK, i int) answer {
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"search_tickets","arguments":{"query":%q,"top_k":%d}}}`,
		i+1, loadQueries[i%len(loadQueries)], topK)
	a := e.do(ctx, http.MethodPost, "/mcp", e.tokens[who], "application/json", []byte(body))
	if a.err == nil && a.status == http.StatusOK && bytes.Contains(a.body, []byte(`"isError":true`)) {
		a.status, a.err = http.StatusInternalServerError, fmt.Errorf("tool error: %.300s", a.body)
	}
	return a
}

// TestLoadWriteBurst: 200 concurrent relationship writes against two write
// slots and a queue of two. Every answer is a 200 or a well-formed overload
// answer, searches keep answering meanwhile (writes have slots of their own),
// every write that answered 200 is in the engine, and the process comes back
// to its idle baseline.
func TestLoadWriteBurst(t *testing.T) {
	e := startLoadServer(t, func(c *serveConfig) { c.MaxConcurrentWrites, c.WriteQueue = 2, 2 })
	admin, err := e.a.devToken("operator", "acme", "", "clearance:admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := e.baseline(t)
	stop := make(chan struct{})
	peak := e.peak(t, stop)
	others := e.ordinary(t, "bob", stop)
	var answers tally
	var wg sync.WaitGroup
	var mu sync.Mutex
	var written []string
	t0 := time.Now()
	for i := range 200 {
		wg.Go(func() {
			who := fmt.Sprintf("user:burst-%d", i)
			body := fmt.Sprintf(`{"writes":[{"user":%q,"relation":"viewer","object":"project:acme-web"}]}`, who)
			if okOrOverload(t, &answers, "burst write", e.do(context.Background(), http.MethodPost, "/v1/relationships", admin, "application/json", []byte(body))) {
				mu.Lock()
				written = append(written, who)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	others.Wait()
	p := <-peak
	t.Logf("burst of 200 writes answered in %s: %s; peak %s", time.Since(t0).Round(time.Millisecond), &answers, p)
	// One principal meets its own in-flight bound (slots + queue: 429) or the
	// full queue (503) first, depending on timing: both are overload answers.
	if len(written) == 0 || answers.get(http.StatusServiceUnavailable)+answers.get(http.StatusTooManyRequests) == 0 {
		t.Errorf("burst: %s; want some writes admitted and some refused by the two slots and the queue of two", &answers)
	}
	var checks []authz.Check
	for _, u := range written {
		checks = append(checks, authz.Check{User: u, Relation: "viewer", Object: "project:acme-web"})
	}
	ok, err := e.a.engine.BatchCheck(context.Background(), authz.Query{Consistency: authz.HigherConsistency}, checks)
	if err != nil {
		t.Fatal(err)
	}
	for i, allowed := range ok {
		if !allowed {
			t.Errorf("%s answered 200 but is not a viewer", written[i])
		}
	}
	e.settled(t, "the write burst", base)
}
