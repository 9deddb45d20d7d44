package pgsession_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/api"
	"github.com/clearance-dev/clearance/api/pgsession"
	"github.com/clearance-dev/clearance/audit/filelog"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/internal/testenv"
)

type tokens map[string]authz.Principal

func (a tokens) Authenticate(_ context.Context, tok string) (authz.Principal, time.Time, error) {
	p, ok := a[tok]
	if !ok {
		return authz.Principal{}, time.Time{}, clearance.ErrUnauthenticated
	}
	return p, time.Time{}, nil
}

var operator = tokens{"op-token": {Kind: authz.KindUser, Tenant: "ops", User: "olga", AuthMethod: "jwt", Scopes: []string{api.ScopeAudit}}}

// replica is one server with the audit page, its own audit log and engine, and
// its own session store on the shared database.
func replica(t *testing.T, databaseURL string) string {
	t.Helper()
	ctx := context.Background()
	l, err := filelog.Open(ctx, filelog.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	e, err := embedded.New(ctx, embedded.Config{Datastore: embedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	store, err := pgsession.Open(ctx, databaseURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	page, err := api.NewAuditPage(api.AuditPageConfig{Reader: &api.AuditReader{Log: l, Engine: e}, Authenticate: operator.Authenticate, Sessions: store})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{}, api.Deps{Auth: operator, Pages: []api.Page{page}}).Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestSessionAcrossReplicas: behind a load balancer, a sign-in on one replica
// is valid on the other, and a sign-out on either ends it on both.
func TestSessionAcrossReplicas(t *testing.T) {
	url1 := testenv.DatabaseURL(t)
	a, b := replica(t, url1), replica(t, url1)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	// The browser keeps one cookie for the balancer's host; the two test servers
	// have different ports, so the session cookie is copied over as the
	// balancer would present it.
	share := func(from, to string) {
		f, _ := url.Parse(from + "/audit")
		tt, _ := url.Parse(to + "/audit")
		jar.SetCookies(tt, jar.Cookies(f))
	}

	_, body := get(t, c, a+"/audit/login")
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field: %s", body)
	}
	if resp, body := post(t, c, a+"/audit/login", url.Values{"csrf": {m[1]}, "token": {"op-token"}}); resp.Request.URL.Path != "/audit" {
		t.Fatalf("sign-in on replica 1 ended on %s: %s", resp.Request.URL.Path, body)
	}
	share(a, b)
	resp, body := get(t, c, b+"/audit")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/audit" || !strings.Contains(body, "olga") {
		t.Fatalf("replica 2 does not know replica 1's session: %d %s", resp.StatusCode, resp.Request.URL.Path)
	}
	// Sign out on replica 2: replica 1 no longer accepts the cookie.
	m = csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field on the list page: %s", body)
	}
	f, _ := url.Parse(a + "/audit")
	stale := jar.Cookies(f)
	if resp, _ := post(t, c, b+"/audit/logout", url.Values{"csrf": {m[1]}}); resp.Request.URL.Path != "/audit/login" {
		t.Fatalf("sign-out on replica 2 ended on %s", resp.Request.URL.Path)
	}
	jar.SetCookies(f, stale) // a copy of the cookie kept elsewhere
	if resp, _ := get(t, c, a+"/audit"); resp.Request.URL.Path != "/audit/login" {
		t.Fatalf("replica 1 still accepts a session signed out on replica 2 (at %s)", resp.Request.URL.Path)
	}
}

// TestStore: expiry, unknown ids, and that the table never holds a cookie value.
func TestStore(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	s, err := pgsession.Open(ctx, dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	p := operator["op-token"]
	if err := s.Put(ctx, "id-1", api.PageSession{Principal: p, Expires: now.Add(time.Minute), CSRF: "c1"}, now); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "id-1", now)
	if err != nil || got.Principal.User != "olga" || got.CSRF != "c1" || !got.Principal.HasScope(api.ScopeAudit) {
		t.Fatalf("get: %+v, %v", got, err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, plain int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE position(convert_to('id-1', 'UTF8') IN id_hash) > 0)
		FROM clearance_audit_sessions`).Scan(&rows, &plain); err != nil || rows != 1 || plain != 0 {
		t.Fatalf("sessions table: %d rows, %d holding the cookie value, %v", rows, plain, err)
	}
	if _, err := s.Get(ctx, "id-1", now.Add(time.Minute)); err == nil {
		t.Fatal("an expired session was returned")
	}
	if _, err := s.Get(ctx, "id-2", now); err == nil {
		t.Fatal("an unknown session was returned")
	}
}
