package api

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
)

var update = flag.Bool("update", false, "rewrite golden files and docs/audit-page.png")

// demoRecord is a search with returned and withheld candidates, as the planner
// writes them.
func demoRecord() *audit.Record {
	r := &audit.Record{
		Kind: "search", Tenant: "acme", RequestID: "req-7f3a",
		Principal: authz.Principal{Kind: authz.KindAgent, Tenant: "acme", User: "anne", Agent: "copilot",
			AuthMethod: "jwt", Scopes: []string{"tickets:read"}},
		Query: "checkout latency spike after the payment deploy", TopK: 5,
		Narrowing: audit.Narrowing{TokenProjects: []string{"apollo", "payments"}, IntentProjects: []string{"payments"}, DroppedProjects: 1},
		Plan: audit.Plan{Path: "prefilter", AllowedProjects: 2, DirectTickets: 1, Rounds: 2, Fetched: 10, Checked: 10, Denied: 3,
			Notes: []string{"over-fetch round 2: 3 of 5 denied in round 1"}},
		Status: "complete", ModelID: "01JD0MODEL7Q2W3E4R5T6Y7U8I", Consistency: "HIGHER_CONSISTENCY",
		Latency: map[string]int64{"embed": 412, "list_objects": 1830, "search": 2240, "batch_check": 6120, "total": 10950},
	}
	add := func(id, project string, score float32, d audit.Decision) {
		r.Results = append(r.Results, audit.Candidate{TicketID: id, Project: project, Score: score, Decision: d})
	}
	add("T-1042", "payments", 0.912, audit.Returned)
	add("T-2210", "hr-cases", 0.887, audit.DeniedByCheck)
	add("T-1057", "payments", 0.861, audit.Returned)
	add("T-3301", "payments", 0.842, audit.DeniedByCheck)
	add("T-1100", "apollo", 0.815, audit.Returned)
	add("T-4410", "legal", 0.801, audit.DeniedByCheck)
	add("T-1203", "payments", 0.774, audit.Returned)
	add("T-1150", "apollo", 0.760, audit.Returned)
	add("T-1311", "payments", 0.733, audit.BeyondK)
	add("T-1312", "payments", 0.731, audit.NotChecked)
	return r
}

type pageServer struct {
	url    string
	record *audit.Record
	page   *AuditPage
}

func newPageServer(t *testing.T) *pageServer {
	t.Helper()
	f := newAuditFixture(t)
	rec := demoRecord()
	if err := f.log.Append(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	tokens := staticAuth{
		"op-token":     user("ops", "olga", ScopeAudit, "tickets:read"),
		"reader-token": user("acme", "bob", "tickets:read"),
	}
	page, err := NewAuditPage(AuditPageConfig{Reader: &AuditReader{Log: f.log, Engine: f.engine}, Authenticate: tokens.Authenticate})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{}, Deps{Auth: tokens, Pages: []Page{page}}).Handler())
	t.Cleanup(srv.Close)
	return &pageServer{url: srv.URL, record: rec, page: page}
}

func newClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
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

// signIn loads the form and posts token with its CSRF value.
func signIn(t *testing.T, c *http.Client, base, token string) (*http.Response, string) {
	t.Helper()
	_, body := get(t, c, base+"/audit/login")
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("login form without a csrf field: %s", body)
	}
	resp, err := c.PostForm(base+"/audit/login", url.Values{"csrf": {m[1]}, "token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestAuditPageSessions checks the page's auth over plain HTTP: redirects without
// a session, the login CSRF check, the scope requirement, the cookie's
// attributes, tenant-less operators seeing every tenant, and sign-out.
func TestAuditPageSessions(t *testing.T) {
	s := newPageServer(t)
	c := newClient(t)

	resp, _ := get(t, c, s.url+"/audit")
	if resp.Request.URL.Path != "/audit/login" {
		t.Fatalf("without a session /audit went to %s, want the login form", resp.Request.URL.Path)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}

	// A login post without the form's CSRF value (a cross-site form) is refused.
	resp, err := newClient(t).PostForm(s.url+"/audit/login", url.Values{"token": {"op-token"}, "csrf": {"guess"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login without csrf cookie: %d, want 403", resp.StatusCode)
	}

	// A valid token without the audit scope, and an unknown token, are refused.
	if resp, body := signIn(t, newClient(t), s.url, "reader-token"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, ScopeAudit) {
		t.Fatalf("token without the scope: %d", resp.StatusCode)
	}
	if resp, _ := signIn(t, newClient(t), s.url, "forged"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown token: %d, want 401", resp.StatusCode)
	}

	// The operator signs in: session cookie attributes, then the list.
	_, body := get(t, c, s.url+"/audit/login")
	m := csrfField.FindStringSubmatch(body)
	noRedirect := &http.Client{Jar: c.Jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noRedirect.PostForm(s.url+"/audit/login", url.Values{"csrf": {m[1]}, "token": {"op-token"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("operator sign-in: %d, want 303", resp.StatusCode)
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/audit" || session.Value == "" {
		t.Fatalf("session cookie %+v, want HttpOnly, SameSite=Strict, Path=/audit", session)
	}
	resp, body = get(t, c, s.url+"/audit")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, s.record.ID) || !strings.Contains(body, "globex") {
		t.Fatalf("operator list: %d, want every tenant's records", resp.StatusCode)
	}
	resp, body = get(t, c, s.url+"/audit?tenant=globex")
	if resp.StatusCode != http.StatusOK || strings.Contains(body, s.record.ID) {
		t.Fatalf("filtered list: %d, shows the acme record", resp.StatusCode)
	}
	resp, body = get(t, c, s.url+"/audit/records/"+s.record.ID)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "T-2210") || !strings.Contains(body, "denied by the post-filter") {
		t.Fatalf("record page: %d", resp.StatusCode)
	}
	if resp, _ := get(t, c, s.url+"/audit/records/01ARZ3NDEKTSV4RRFFQ69G5FAV"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing record: %d, want 404", resp.StatusCode)
	}

	// Sign-out needs the session's CSRF token; then the session is gone.
	m = csrfField.FindStringSubmatch(body)
	resp, err = c.PostForm(s.url+"/audit/logout", url.Values{"csrf": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp, _ := get(t, c, s.url+"/audit"); resp.Request.URL.Path != "/audit/login" {
		t.Fatalf("after sign-out /audit went to %s", resp.Request.URL.Path)
	}
	// The old cookie value no longer opens a session.
	old := newClient(t)
	u, _ := url.Parse(s.url + "/audit")
	old.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: session.Value, Path: "/audit"}})
	if resp, _ := get(t, old, s.url+"/audit"); resp.Request.URL.Path != "/audit/login" {
		t.Fatal("a signed-out session cookie still works")
	}
}

// TestAuditPageChromium signs in with a real browser, lists, opens a record and
// checks that withheld candidates show with their reasons. -update rewrites
// docs/audit-page.png.
func TestAuditPageChromium(t *testing.T) {
	bin := "/usr/bin/chromium"
	if p, err := exec.LookPath("chromium"); err == nil {
		bin = p
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required in CI (make test installs it): %v", err)
		}
		t.Skip("chromium not installed: run `make test` (installs Debian's chromium)")
	}
	s := newPageServer(t)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1100),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	err := chromedp.Do(ctx,
		chromedp.Navigate(s.url+"/audit"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), "op-token"),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("records")),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	list, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("records")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, "anne") || !strings.Contains(list, "globex") {
		t.Fatalf("list does not show the records:\n%s", list)
	}
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/audit/records/`+s.record.ID+`"]`)),
		chromedp.WaitVisible(chromedp.ID("withheld")),
	)
	if err != nil {
		t.Fatalf("open record: %v", err)
	}
	withheld, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("withheld")))
	if err != nil {
		t.Fatal(err)
	}
	returned, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("returned")))
	if err != nil {
		t.Fatal(err)
	}
	unused, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("unused")))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range s.record.Results {
		inW, inR, inU := strings.Contains(withheld, c.TicketID), strings.Contains(returned, c.TicketID), strings.Contains(unused, c.TicketID)
		wantU := c.Decision == audit.BeyondK || c.Decision == audit.NotChecked
		if c.Decision == audit.Returned != inR || (c.Decision == audit.DeniedByCheck) != inW || wantU != inU {
			t.Errorf("%s (%s): in returned table %v, in withheld table %v, in not-needed table %v", c.TicketID, c.Decision, inR, inW, inU)
		}
		if c.Decision != audit.Returned && !strings.Contains(withheld+unused, decisionReason(c.Decision)) {
			t.Errorf("%s: reason %q not shown", c.TicketID, decisionReason(c.Decision))
		}
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot of %d bytes", len(png))
	}
	if *update {
		if err := os.WriteFile(filepath.Join("..", "docs", "audit-page.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join("..", "docs", "audit-page.png")); errors.Is(err, os.ErrNotExist) {
		t.Error("docs/audit-page.png is missing: run go test ./api -run AuditPageChromium -update")
	}
}

// TestAuditPageRedaction: the page reads through the same AuditReader, so a
// tenant admin's session shows a ticket the admin may not view only as "withheld
// from you", with no id, project or score, while the operator's shows it. Sign-in
// admits operators only today, so bob's session is put in the session table
// directly: what is pinned is the rendering of what the reader withholds.
func TestAuditPageRedaction(t *testing.T) {
	env := newRedactionEnv(t)
	page, err := NewAuditPage(AuditPageConfig{Reader: env.reader, Authenticate: redactionTokens.Authenticate})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{}, Deps{Auth: redactionTokens, Pages: []Page{page}}).Handler())
	t.Cleanup(srv.Close)

	op := newClient(t)
	if resp, body := signIn(t, op, srv.URL, "op"); resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/audit" {
		t.Fatalf("operator sign-in: %d %s", resp.StatusCode, body)
	}
	bob := newClient(t)
	if err := page.cfg.Sessions.Put(context.Background(), "bob-session", PageSession{Principal: redactionTokens["bob"], Expires: time.Now().Add(time.Hour), CSRF: randomToken()}, time.Now()); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL + "/audit")
	bob.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "bob-session", Path: "/audit"}})

	search := "/audit/records/" + env.recs["search"].ID
	if resp, body := get(t, op, srv.URL+search); resp.StatusCode != 200 || !blockedTicket.MatchString(body) || !strings.Contains(body, docs2Score) {
		t.Fatalf("operator's record page does not show DOCS-2: %d", resp.StatusCode)
	}
	for _, name := range []string{"search", "ticket", "agent", "error"} {
		resp, body := get(t, bob, srv.URL+"/audit/records/"+env.recs[name].ID)
		if resp.StatusCode != 200 || blockedTicket.MatchString(body) || strings.Contains(body, docs2Score) || strings.Contains(body, docs2AgentScore) ||
			!strings.Contains(body, `id="redacted"`) {
			t.Fatalf("bob's page of %s: %d\n%s", name, resp.StatusCode, body)
		}
		if name != "error" && !strings.Contains(body, `<td class="muted">withheld from you</td>`) {
			t.Fatalf("bob's page of %s does not mark the withheld candidate:\n%s", name, body)
		}
		if name == "search" && (!strings.Contains(body, "DOCS-1") || !strings.Contains(body, "0.8123")) {
			t.Fatalf("bob's page of the search hides tickets he may view:\n%s", body)
		}
	}
	// The list's ticket filter: a blocked ticket lists like an unknown one.
	norm := func(body, ticket string) string { return strings.ReplaceAll(body, `value="`+ticket+`"`, `value="T"`) }
	_, blocked := get(t, bob, srv.URL+"/audit?ticket=DOCS-2")
	_, unknown := get(t, bob, srv.URL+"/audit?ticket=NOPE-404")
	if norm(blocked, "DOCS-2") != norm(unknown, "NOPE-404") || !strings.Contains(blocked, "No records match.") {
		t.Fatalf("bob's list by a blocked ticket differs from an unknown one:\n%s\n%s", blocked, unknown)
	}
	if _, body := get(t, op, srv.URL+"/audit?ticket=DOCS-2"); strings.Contains(body, "No records match.") {
		t.Fatal("operator's list by DOCS-2 is empty")
	}
	// Fail closed on the page too.
	env.engine.failBatch.Store(true)
	if resp, body := get(t, bob, srv.URL+search); resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "DOCS-") {
		t.Fatalf("bob's record page with BatchCheck failing: %d\n%s", resp.StatusCode, body)
	}
}

// downSessions is a session store that cannot be reached (fault injection).
type downSessions struct{}

func (downSessions) Put(context.Context, string, PageSession, time.Time) error {
	return fmt.Errorf("sessions: %w", clearance.ErrUnavailable)
}

func (downSessions) Get(context.Context, string, time.Time) (PageSession, error) {
	return PageSession{}, fmt.Errorf("sessions: %w", clearance.ErrUnavailable)
}

func (downSessions) Delete(context.Context, string) error {
	return fmt.Errorf("sessions: %w", clearance.ErrUnavailable)
}

// TestAuditPageSessionStoreDown: when the shared session store cannot answer,
// the page answers 503: no page without a checked session, no sign-in that
// would not hold, no sign-out that did not happen.
func TestAuditPageSessionStoreDown(t *testing.T) {
	f := newAuditFixture(t)
	tokens := staticAuth{"op-token": user("ops", "olga", ScopeAudit)}
	page, err := NewAuditPage(AuditPageConfig{Reader: &AuditReader{Log: f.log, Engine: f.engine}, Authenticate: tokens.Authenticate, Sessions: downSessions{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{}, Deps{Auth: tokens, Pages: []Page{page}}).Handler())
	defer srv.Close()
	c := newClient(t)
	if resp, _ := signIn(t, c, srv.URL, "op-token"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("sign-in with the store down: %d, want 503", resp.StatusCode)
	}
	u, _ := url.Parse(srv.URL + "/audit")
	c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "some-session", Path: "/audit"}})
	if resp, _ := get(t, c, srv.URL+"/audit"); resp.StatusCode != http.StatusServiceUnavailable || resp.Request.URL.Path != "/audit" {
		t.Fatalf("page with the store down: %d at %s, want 503", resp.StatusCode, resp.Request.URL.Path)
	}
	resp, err := c.PostForm(srv.URL+"/audit/logout", url.Values{"csrf": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("sign-out with the store down: %d, want 503", resp.StatusCode)
	}
}

var listCounts = regexp.MustCompile(`<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>`)

// TestAuditPageWithheldCountsDenied: the list's "Withheld" counts only the
// candidates the post-filter denied (3 in demoRecord), not those beyond top_k
// or not checked, which it shows apart (2); returned stays 5.
func TestAuditPageWithheldCountsDenied(t *testing.T) {
	s := newPageServer(t)
	c := newClient(t)
	if resp, body := signIn(t, c, s.url, "op-token"); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	_, body := get(t, c, s.url+"/audit")
	m := listCounts.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no counts in the list:\n%s", body)
	}
	if got := m[1] + "/" + m[2] + "/" + m[3]; got != "5/3/2" {
		t.Errorf("returned/withheld/not needed = %s, want 5/3/2", got)
	}
	_, body = get(t, c, s.url+"/audit/records/"+s.record.ID)
	if !strings.Contains(body, "Withheld (3)") || !strings.Contains(body, "Not needed (2)") {
		t.Errorf("record page headings: want Withheld (3) and Not needed (2)")
	}
}
