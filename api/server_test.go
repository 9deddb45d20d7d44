package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"gopkg.in/yaml.v3"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// pendingRoutes are documented in openapi.yaml but not routed yet; their owners
// remove them from this list when they register the route.
var pendingRoutes = []string{
	"POST /mcp",
	"GET /mcp",
	"DELETE /mcp",
}

// staticAuth maps fixed tokens to principals (token verification itself is
// tested in auth_test.go against real tokens).
type staticAuth map[string]authz.Principal

func (a staticAuth) Authenticate(_ context.Context, tok string) (authz.Principal, time.Time, error) {
	p, ok := a[tok]
	if !ok {
		return authz.Principal{}, time.Time{}, clearance.ErrUnauthenticated
	}
	return p, time.Time{}, nil
}

func fullServer(t *testing.T, cfg Config, deps Deps) *Server {
	t.Helper()
	page, err := NewAuditPage(AuditPageConfig{Reader: &AuditReader{}, Authenticate: func(context.Context, string) (authz.Principal, time.Time, error) {
		return authz.Principal{}, time.Time{}, clearance.ErrUnauthenticated
	}})
	if err != nil {
		t.Fatal(err)
	}
	deps.Areas = append(deps.Areas, &SearchAPI{}, &AuditReader{}, &FlowAPI{})
	deps.Pages = append(deps.Pages, page)
	return New(cfg, deps)
}

var echoParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// TestOpenAPIMatchesRoutes: every route is documented and every documented
// operation is routed (or explicitly pending).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			if m, ok := op.(map[string]any); !ok || m["responses"] == nil {
				t.Errorf("%s %s has no responses", method, path)
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	s := fullServer(t, Config{}, Deps{DevJWKS: []byte(`{"keys":[]}`)})
	routed := map[string]bool{}
	for _, r := range s.Echo().Routes() {
		if r.Method == echo.RouteNotFound || strings.HasSuffix(r.Path, "/*") {
			continue
		}
		routed[r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	for r := range routed {
		if !documented[r] {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
		if slices.Contains(pendingRoutes, r) {
			t.Errorf("route %s is routed now: remove it from pendingRoutes", r)
		}
	}
	for d := range documented {
		if !routed[d] && !slices.Contains(pendingRoutes, d) {
			t.Errorf("openapi.yaml documents %s but nothing serves it", d)
		}
	}
}

func hget(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return hsend(t, http.MethodGet, url, "", hdr...)
}

func hsend(t *testing.T, method, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func problem(t *testing.T, resp *http.Response, body []byte, status int) Problem {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q: %s", ct, body)
	}
	var p Problem
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", body, err)
	}
	if p.Status != status || p.Type == "" || p.Title == "" {
		t.Fatalf("problem %+v", p)
	}
	return p
}

// failArea answers with whatever error a test hands it, and echoes JSON bodies.
type failArea struct{ err error }

func (f *failArea) Register(g *echo.Group, principal func(echo.Context) (authz.Principal, error)) {
	g.GET("/fail", func(c echo.Context) error { return f.err })
	g.POST("/echo", func(c echo.Context) error {
		if _, err := principal(c); err != nil {
			return err
		}
		var v struct {
			Name string `json:"name"`
		}
		if err := decodeStrict(c.Request().Body, &v); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, v)
	})
}

// TestErrorTable: each error kind answers its status as problem+json; internal
// details never reach the caller.
func TestErrorTable(t *testing.T) {
	area := &failArea{}
	auth := staticAuth{"t": {Kind: authz.KindUser, Tenant: "acme", User: "anne"}}
	srv := httptest.NewServer(New(Config{BodyLimit: 64}, Deps{Auth: auth, Areas: []Area{area}}).Handler())
	defer srv.Close()
	bearer := []string{"Authorization", "Bearer t"}
	for _, tc := range []struct {
		err    error
		status int
	}{
		{clearance.Invalid("top_k", "too big"), 400},
		{clearance.ErrNotFound, 404},
		{clearance.ErrForbidden, 403},
		{clearance.ErrConflict, 409},
		{clearance.ErrUnavailable, 503},
		{clearance.ErrTooLarge, 413},
		{errors.New("pq: password=hunter2 connection refused"), 500},
	} {
		area.err = tc.err
		resp, body := hget(t, srv.URL+"/v1/fail", bearer...)
		p := problem(t, resp, body, tc.status)
		if strings.Contains(string(body), "hunter2") {
			t.Fatalf("internal detail leaked: %s", body)
		}
		if tc.status == 400 && (len(p.Errors) != 1 || p.Errors[0].Field != "top_k") {
			t.Fatalf("field error missing: %s", body)
		}
		if p.RequestID == "" || p.RequestID != resp.Header.Get("X-Request-Id") {
			t.Fatalf("request id %q vs header %q", p.RequestID, resp.Header.Get("X-Request-Id"))
		}
	}
	// Router errors.
	resp, body := hget(t, srv.URL+"/nope")
	problem(t, resp, body, 404)
	resp, body = hsend(t, http.MethodDelete, srv.URL+"/healthz", "")
	problem(t, resp, body, 405)
	// Unknown field, malformed JSON, oversized body.
	resp, body = hsend(t, http.MethodPost, srv.URL+"/v1/echo", `{"name":"x","evil":1}`, bearer...)
	if p := problem(t, resp, body, 400); len(p.Errors) != 1 || p.Errors[0].Field != "evil" {
		t.Fatalf("unknown field: %s", body)
	}
	resp, body = hsend(t, http.MethodPost, srv.URL+"/v1/echo", `{"name":`, bearer...)
	problem(t, resp, body, 400)
	resp, body = hsend(t, http.MethodPost, srv.URL+"/v1/echo", `{"name":"`+strings.Repeat("x", 100)+`"}`, bearer...)
	problem(t, resp, body, 413)
	resp, body = hsend(t, http.MethodPost, srv.URL+"/v1/echo", `{"name":"ok"}`, bearer...)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("echo: %d %s", resp.StatusCode, body)
	}
	// No credential: 401 with the resource metadata pointer and no error code.
	resp, body = hget(t, srv.URL+"/v1/fail")
	problem(t, resp, body, 401)
	if w := resp.Header.Get("WWW-Authenticate"); !strings.Contains(w, `resource_metadata="`+srv.URL+`/.well-known/oauth-protected-resource"`) || strings.Contains(w, "invalid_token") {
		t.Fatalf("WWW-Authenticate %q", w)
	}
	// A missing scope: 403 insufficient_scope.
	area.err = NeedScope(authz.Principal{}, ScopeTicketsRead)
	resp, body = hget(t, srv.URL+"/v1/fail", bearer...)
	problem(t, resp, body, 403)
	if w := resp.Header.Get("WWW-Authenticate"); !strings.Contains(w, `error="insufficient_scope"`) || !strings.Contains(w, `scope="tickets:read"`) {
		t.Fatalf("WWW-Authenticate %q", w)
	}
}

// TestHealthReadyMetrics: /readyz turns 503 when a backend fails; /metrics serves
// our registry; /openapi.yaml and the RFC 9728 document are public.
func TestHealthReadyMetrics(t *testing.T) {
	var storeErr error
	deps := Deps{Ready: map[string]Pinger{
		"engine": PingFunc(func(context.Context) error { return nil }),
		"store":  PingFunc(func(context.Context) error { return storeErr }),
	}}
	srv := httptest.NewServer(New(Config{PublicURL: "https://clearance.example.com/", AuthorizationServers: []string{"https://idp.example.com"}}, deps).Handler())
	defer srv.Close()
	if resp, body := hget(t, srv.URL+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz %d %s", resp.StatusCode, body)
	}
	if resp, body := hget(t, srv.URL+"/readyz"); resp.StatusCode != 200 {
		t.Fatalf("readyz %d %s", resp.StatusCode, body)
	}
	storeErr = errors.New("disk on fire")
	resp, body := hget(t, srv.URL+"/readyz")
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"store":"fail"`) || strings.Contains(string(body), "fire") {
		t.Fatalf("readyz with a failing store: %d %s", resp.StatusCode, body)
	}
	resp, body = hget(t, srv.URL+"/metrics")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "clearance_http_request_duration_seconds") {
		t.Fatalf("metrics %d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "openfga") {
		t.Fatalf("metrics carry the default registry")
	}
	resp, body = hget(t, srv.URL+"/openapi.yaml")
	if resp.StatusCode != 200 || string(body) != string(openAPI) {
		t.Fatalf("openapi.yaml %d", resp.StatusCode)
	}
	resp, body = hget(t, srv.URL+"/.well-known/oauth-protected-resource")
	var md map[string]any
	if err := json.Unmarshal(body, &md); err != nil || resp.StatusCode != 200 {
		t.Fatalf("metadata %d %s", resp.StatusCode, body)
	}
	if md["resource"] != "https://clearance.example.com" || len(md["authorization_servers"].([]any)) != 1 {
		t.Fatalf("metadata %s", body)
	}
}

// TestRunDrains: Run returns after ctx is cancelled, once the request in flight
// has been answered.
func TestRunDrains(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	slow := areaFunc(func(g *echo.Group, _ func(echo.Context) (authz.Principal, error)) {
		g.GET("/slow", func(c echo.Context) error {
			close(started)
			<-release
			return c.String(http.StatusOK, "done")
		})
	})
	s := New(Config{}, Deps{Auth: staticAuth{"t": {Kind: authz.KindUser}}, Areas: []Area{slow}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	got := make(chan string, 1)
	go func() {
		_, body := hget(t, "http://"+ln.Addr().String()+"/v1/slow", "Authorization", "Bearer t")
		got <- string(body)
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned before the request finished: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if b := <-got; b != "done" {
		t.Fatalf("in-flight request got %q", b)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type areaFunc func(g *echo.Group, principal func(echo.Context) (authz.Principal, error))

func (f areaFunc) Register(g *echo.Group, principal func(echo.Context) (authz.Principal, error)) {
	f(g, principal)
}

// recorder keeps grant events (the audit hook).
type recorder struct{ events []GrantEvent }

func (r *recorder) RecordGrant(_ context.Context, e GrantEvent) error {
	r.events = append(r.events, e)
	return nil
}

// TestAccessLogAndGrantHook: one info line per request with route, status and
// principal, never the credential or the query string; grants reach the hook.
func TestAccessLogAndGrantHook(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, nil))
	e := demoEngine(t)
	rec := &recorder{}
	auth := staticAuth{"secret-token-value": {Kind: authz.KindUser, Tenant: "acme", User: "erin"}}
	srv := httptest.NewServer(New(Config{Logger: log}, Deps{Auth: auth, Engine: e, GrantEvents: rec}).Handler())
	defer srv.Close()
	hdr := []string{"Authorization", "Bearer secret-token-value", "Content-Type", "application/json"}
	resp, body := hsend(t, http.MethodPost, srv.URL+"/v1/grants?note=private-words", `{"agent":"scribe","projects":["acme-web"]}`, hdr...)
	if resp.StatusCode != 201 {
		t.Fatalf("grant: %d %s", resp.StatusCode, body)
	}
	hsend(t, http.MethodDelete, srv.URL+"/v1/grants/scribe", "", hdr...)
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if strings.Contains(out, "secret-token-value") || strings.Contains(out, "private-words") {
		t.Fatalf("log leaks the credential or the query string:\n%s", out)
	}
	if !strings.Contains(out, `"route":"/v1/grants"`) || !strings.Contains(out, `"status":201`) || !strings.Contains(out, `"principal":"user:acme/erin"`) {
		t.Fatalf("access log line missing:\n%s", out)
	}
	if len(rec.events) != 2 || rec.events[0].Action != "grant" || rec.events[1].Action != "revoke" ||
		rec.events[1].Grants[0] != (Grant{User: "erin", Agent: "scribe", Project: "acme-web"}) || rec.events[0].By.User != "erin" {
		t.Fatalf("grant events %+v", rec.events)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
