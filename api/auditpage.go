package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
)

//go:embed templates/audit/*.html
var auditTemplates embed.FS

// Cookies of the audit page. Both are HttpOnly, SameSite=Strict, scoped to /audit
// and Secure when the request came over TLS.
const (
	sessionCookie = "clearance_audit_session"
	loginCookie   = "clearance_audit_login" // CSRF token of the login form
)

// AuthenticateFunc verifies a bearer token (the server's token verifier) and
// returns its principal and expiry (zero: none).
type AuthenticateFunc func(ctx context.Context, token string) (authz.Principal, time.Time, error)

// AuditPageConfig configures the operator page at /audit.
type AuditPageConfig struct {
	Reader       *AuditReader
	Authenticate AuthenticateFunc
	// SessionTTL caps a session (default 8h); it also ends when the token expires.
	SessionTTL time.Duration
	// Sessions keeps the sessions (default: this process's memory). With more
	// than one replica it must be shared (api/pgsession), or a sign-in on one
	// replica is unknown to the next.
	Sessions SessionStore
	Logger   *slog.Logger
	Now      func() time.Time
}

// AuditPage is the server-rendered operator page: a login form that takes an
// operator token (scope clearance:audit) once, then a server-side session.
type AuditPage struct {
	cfg   AuditPageConfig
	pages map[string]*template.Template
}

// PageSession is one signed-in operator of the audit page.
type PageSession struct {
	Principal authz.Principal
	Expires   time.Time
	// CSRF is the per-session token the page's forms carry.
	CSRF string
}

// SessionStore keeps audit page sessions by their cookie value. Failures wrap
// clearance.ErrUnavailable: the page then answers 503, never a session it
// could not check.
type SessionStore interface {
	// Put stores a new session (and may drop sessions expired by now).
	Put(ctx context.Context, id string, s PageSession, now time.Time) error
	// Get returns the session id names, or an error wrapping
	// clearance.ErrNotFound when there is none or it expired by now.
	Get(ctx context.Context, id string, now time.Time) (PageSession, error)
	// Delete ends a session (no error when there is none).
	Delete(ctx context.Context, id string) error
}

// maxMemorySessions bounds the in-memory store; past it a sign-in is refused
// until sessions expire.
const maxMemorySessions = 10000

// MemorySessions is the single-process SessionStore: sessions end on restart
// and are unknown to other replicas.
type MemorySessions struct {
	mu       sync.Mutex
	sessions map[string]PageSession
}

// NewMemorySessions returns an empty store.
func NewMemorySessions() *MemorySessions {
	return &MemorySessions{sessions: map[string]PageSession{}}
}

// Put implements SessionStore.
func (m *MemorySessions) Put(_ context.Context, id string, s PageSession, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, old := range m.sessions {
		if !now.Before(old.Expires) {
			delete(m.sessions, k)
		}
	}
	if len(m.sessions) >= maxMemorySessions {
		return fmt.Errorf("%d audit page sessions open: %w", len(m.sessions), clearance.ErrUnavailable)
	}
	m.sessions[id] = s
	return nil
}

// Get implements SessionStore.
func (m *MemorySessions) Get(_ context.Context, id string, now time.Time) (PageSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if ok && !now.Before(s.Expires) {
		delete(m.sessions, id)
		ok = false
	}
	if !ok {
		return PageSession{}, fmt.Errorf("audit page session: %w", clearance.ErrNotFound)
	}
	return s, nil
}

// Delete implements SessionStore.
func (m *MemorySessions) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	return nil
}

// NewAuditPage parses the embedded templates.
func NewAuditPage(cfg AuditPageConfig) (*AuditPage, error) {
	if cfg.Reader == nil || cfg.Authenticate == nil {
		return nil, errors.New("audit page: Reader and Authenticate are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sessions == nil {
		cfg.Sessions = NewMemorySessions()
	}
	funcs := template.FuncMap{"reason": decisionReason, "hidden": func(c audit.Candidate) bool { return c.TicketID == WithheldTicket }}
	p := &AuditPage{cfg: cfg, pages: map[string]*template.Template{}}
	for _, name := range []string{"login", "list", "record"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(auditTemplates, "templates/audit/layout.html", "templates/audit/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("audit page: %w", err)
		}
		p.pages[name] = t
	}
	return p, nil
}

// Register adds the page's routes. They do not use the bearer-token middleware:
// the browser holds a session cookie instead.
func (p *AuditPage) Register(e *echo.Echo) {
	g := e.Group("/audit", pageHeaders)
	g.GET("", p.list)
	g.GET("/login", p.loginForm)
	g.POST("/login", p.login)
	g.POST("/logout", p.logout)
	g.GET("/records/:id", p.record)
}

// pageHeaders keeps the page out of frames, caches and other origins' scripts.
func pageHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

func decisionReason(d audit.Decision) string {
	switch d {
	case audit.DeniedByCheck:
		return "denied by the post-filter: the principal may not view this ticket now"
	case audit.BeyondK:
		return "allowed, but not needed: the answer already had top_k results"
	case audit.NotChecked:
		return "not checked: budget ran out or duplicate of a returned ticket"
	case audit.Returned:
		return "returned"
	case audit.FlowSource:
		return "a source of the flow check"
	case audit.FlowDestination:
		return "the destination of the flow check"
	}
	return string(d)
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (p *AuditPage) cookie(c echo.Context, name, value string, expires time.Time) {
	ck := &http.Cookie{Name: name, Value: value, Path: "/audit", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.Request().TLS != nil || c.Scheme() == "https"}
	if value == "" {
		ck.MaxAge = -1
	} else {
		ck.Expires = expires
	}
	c.SetCookie(ck)
}

func (p *AuditPage) render(c echo.Context, status int, name string, data any) error {
	var b bytes.Buffer
	if err := p.pages[name].ExecuteTemplate(&b, name+".html", data); err != nil {
		return fmt.Errorf("audit page %s: %w", name, err)
	}
	return c.HTMLBlob(status, b.Bytes())
}

// session returns the caller's live session (nil: none), or an error when the
// store could not answer.
func (p *AuditPage) session(c echo.Context) (*PageSession, error) {
	ck, err := c.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil
	}
	s, err := p.cfg.Sessions.Get(c.Request().Context(), ck.Value, p.cfg.Now())
	if errors.Is(err, clearance.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		p.cfg.Logger.Warn("audit page: session store", "err", err)
		return nil, err
	}
	return &s, nil
}

// unavailable is the page's answer when the session store could not be read:
// no page without a checked session.
func (p *AuditPage) unavailable(c echo.Context, err error) error {
	return p.render(c, Status(err), "login", loginData{pageBase: pageBase{Title: "Unavailable"},
		Error: "Sessions cannot be checked right now; try again shortly."})
}

type pageBase struct {
	Title, Subject, CSRF string
}

func (s *PageSession) base(title string) pageBase {
	return pageBase{Title: title, Subject: s.Principal.User, CSRF: s.CSRF}
}

type loginData struct {
	pageBase
	Error string
}

func (p *AuditPage) loginForm(c echo.Context) error {
	if s, _ := p.session(c); s != nil {
		return c.Redirect(http.StatusSeeOther, "/audit")
	}
	return p.showLogin(c, http.StatusOK, "")
}

func (p *AuditPage) showLogin(c echo.Context, status int, msg string) error {
	csrf := randomToken()
	p.cookie(c, loginCookie, csrf, p.cfg.Now().Add(30*time.Minute))
	return p.render(c, status, "login", loginData{pageBase: pageBase{Title: "Sign in", CSRF: csrf}, Error: msg})
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (p *AuditPage) login(c echo.Context) error {
	ck, err := c.Cookie(loginCookie)
	if err != nil || !sameToken(ck.Value, c.FormValue("csrf")) {
		return p.showLogin(c, http.StatusForbidden, "The form expired; please sign in again.")
	}
	token := c.FormValue("token")
	if token == "" {
		return p.showLogin(c, http.StatusBadRequest, "Paste an access token.")
	}
	pr, exp, err := p.cfg.Authenticate(c.Request().Context(), token)
	if err != nil {
		p.cfg.Logger.Info("audit page: sign-in refused", "err", err)
		if errors.Is(err, clearance.ErrUnavailable) {
			return p.showLogin(c, http.StatusServiceUnavailable, "Token verification is unavailable; try again shortly.")
		}
		return p.showLogin(c, http.StatusUnauthorized, "The token was not accepted.")
	}
	if pr.Kind != authz.KindUser || !pr.HasScope(ScopeAudit) {
		p.cfg.Logger.Info("audit page: sign-in without the audit scope", "principal", pr.String())
		return p.showLogin(c, http.StatusForbidden, "This page needs an operator token with the "+ScopeAudit+" scope.")
	}
	now := p.cfg.Now()
	expires := now.Add(p.cfg.SessionTTL)
	if !exp.IsZero() && exp.Before(expires) {
		expires = exp
	}
	id := randomToken()
	if err := p.cfg.Sessions.Put(c.Request().Context(), id, PageSession{Principal: pr, Expires: expires, CSRF: randomToken()}, now); err != nil {
		p.cfg.Logger.Warn("audit page: session store", "err", err)
		return p.showLogin(c, Status(err), "Sign-in is unavailable right now; try again shortly.")
	}
	p.cookie(c, loginCookie, "", time.Time{})
	p.cookie(c, sessionCookie, id, expires)
	p.cfg.Logger.Info("audit page: signed in", "principal", pr.String(), "until", expires)
	return c.Redirect(http.StatusSeeOther, "/audit")
}

func (p *AuditPage) logout(c echo.Context) error {
	s, err := p.session(c)
	if err != nil {
		return p.unavailable(c, err)
	}
	if s != nil && sameToken(s.CSRF, c.FormValue("csrf")) {
		// The session ends in the store, so on every replica; if that fails the
		// cookie stays and the operator is told, rather than believing it ended.
		ck, _ := c.Cookie(sessionCookie)
		if err := p.cfg.Sessions.Delete(c.Request().Context(), ck.Value); err != nil {
			p.cfg.Logger.Warn("audit page: session store", "err", err)
			return p.unavailable(c, err)
		}
	}
	p.cookie(c, sessionCookie, "", time.Time{})
	return c.Redirect(http.StatusSeeOther, "/audit/login")
}

type listRow struct {
	ID, Time, Kind, Tenant, Principal, Agent, Query, Status string
	// Withheld counts the candidates the post-filter denied; Unused those it
	// allowed but the answer did not need (beyond top_k, or not checked).
	Returned, Withheld, Unused int
}

type listData struct {
	pageBase
	Filter       audit.Filter
	Since, Until string
	Rows         []listRow
	Next         string
	Error        string
}

const pageTime = "2006-01-02 15:04:05"

func (p *AuditPage) list(c echo.Context) error {
	s, err := p.session(c)
	if err != nil {
		return p.unavailable(c, err)
	}
	if s == nil {
		return c.Redirect(http.StatusSeeOther, "/audit/login")
	}
	q := c.QueryParams()
	for k, v := range q { // empty form fields mean "any"
		if len(v) == 1 && v[0] == "" {
			delete(q, k)
		}
	}
	d := listData{pageBase: s.base("Decisions")}
	f, err := parseAuditFilter(q)
	d.Filter = f
	if !f.Since.IsZero() {
		d.Since = f.Since.Format("2006-01-02T15:04:05")
	}
	if !f.Until.IsZero() {
		d.Until = f.Until.Format("2006-01-02T15:04:05")
	}
	if err != nil {
		d.Error = err.Error()
		return p.render(c, http.StatusBadRequest, "list", d)
	}
	page, err := p.cfg.Reader.List(c.Request().Context(), s.Principal, f)
	if err != nil {
		d.Error = pageError(err)
		p.cfg.Logger.Warn("audit page: list", "err", err)
		return p.render(c, Status(err), "list", d)
	}
	for _, r := range page.Records {
		row := listRow{ID: r.ID, Time: r.Time.UTC().Format(pageTime), Kind: r.Kind, Tenant: r.Tenant,
			Principal: r.Principal.User, Agent: r.Principal.Agent, Query: r.Query, Status: r.Status}
		if r.Principal.ServiceAccount != "" {
			row.Principal = "service account " + r.Principal.ServiceAccount
		}
		if row.Query == "" && r.QueryHash != "" {
			row.Query = "sha256 " + r.QueryHash[:min(12, len(r.QueryHash))] + "…"
		}
		for _, cand := range r.Results {
			switch cand.Decision {
			case audit.Returned:
				row.Returned++
			case audit.DeniedByCheck:
				row.Withheld++
			case audit.BeyondK, audit.NotChecked:
				row.Unused++
			}
			// A flow check's sources and destination are neither.
		}
		d.Rows = append(d.Rows, row)
	}
	if page.Next != "" {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("cursor", page.Next)
		d.Next = "/audit?" + nq.Encode()
	}
	return p.render(c, http.StatusOK, "list", d)
}

type latencyRow struct {
	Stage  string
	Millis string
}

type recordData struct {
	pageBase
	Record             *audit.Record
	Time               string
	Returned, Withheld []audit.Candidate
	// Unused are candidates the answer did not need (beyond top_k, not checked):
	// not withheld, as nothing denied them.
	Unused []audit.Candidate
	// Flow holds a flow check's source and destination tickets.
	Flow    []audit.Candidate
	Latency []latencyRow
}

func (p *AuditPage) record(c echo.Context) error {
	s, err := p.session(c)
	if err != nil {
		return p.unavailable(c, err)
	}
	if s == nil {
		return c.Redirect(http.StatusSeeOther, "/audit/login")
	}
	r, err := p.cfg.Reader.Get(c.Request().Context(), s.Principal, c.Param("id"))
	if err != nil {
		return p.render(c, Status(err), "list", listData{pageBase: s.base("Not found"), Error: pageError(err)})
	}
	d := recordData{pageBase: s.base("Record " + r.ID), Record: r, Time: r.Time.UTC().Format(time.RFC3339Nano)}
	for _, cand := range r.Results {
		switch cand.Decision {
		case audit.Returned:
			d.Returned = append(d.Returned, cand)
		case audit.FlowSource, audit.FlowDestination:
			d.Flow = append(d.Flow, cand)
		case audit.BeyondK, audit.NotChecked:
			d.Unused = append(d.Unused, cand)
		default:
			d.Withheld = append(d.Withheld, cand)
		}
	}
	stages := make([]string, 0, len(r.Latency))
	for k := range r.Latency {
		stages = append(stages, k)
	}
	slices.Sort(stages)
	for _, k := range stages {
		d.Latency = append(d.Latency, latencyRow{Stage: k, Millis: fmt.Sprintf("%.2f", float64(r.Latency[k])/1000)})
	}
	return p.render(c, http.StatusOK, "record", d)
}

// pageError is what the page shows for err: the error table's detail, or the
// invalid field and why.
func pageError(err error) string {
	p := problemFor(err)
	if len(p.Errors) > 0 {
		return p.Errors[0].Field + ": " + p.Errors[0].Reason
	}
	return p.Detail
}
