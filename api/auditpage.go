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
	Logger     *slog.Logger
	Now        func() time.Time
}

// AuditPage is the server-rendered operator page: a login form that takes an
// operator token (scope clearance:audit) once, then a server-side session.
type AuditPage struct {
	cfg   AuditPageConfig
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]*pageSession
}

type pageSession struct {
	principal authz.Principal
	expires   time.Time
	csrf      string
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
	funcs := template.FuncMap{"reason": decisionReason, "hidden": func(c audit.Candidate) bool { return c.TicketID == WithheldTicket }}
	p := &AuditPage{cfg: cfg, pages: map[string]*template.Template{}, sessions: map[string]*pageSession{}}
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

// session returns the caller's live session (nil: none).
func (p *AuditPage) session(c echo.Context) *pageSession {
	ck, err := c.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sessions[ck.Value]
	if s != nil && !p.cfg.Now().Before(s.expires) {
		delete(p.sessions, ck.Value)
		return nil
	}
	return s
}

type pageBase struct {
	Title, Subject, CSRF string
}

func (s *pageSession) base(title string) pageBase {
	return pageBase{Title: title, Subject: s.principal.User, CSRF: s.csrf}
}

type loginData struct {
	pageBase
	Error string
}

func (p *AuditPage) loginForm(c echo.Context) error {
	if p.session(c) != nil {
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
	id, s := randomToken(), &pageSession{principal: pr, expires: expires, csrf: randomToken()}
	p.mu.Lock()
	for k, old := range p.sessions {
		if !now.Before(old.expires) {
			delete(p.sessions, k)
		}
	}
	p.sessions[id] = s
	p.mu.Unlock()
	p.cookie(c, loginCookie, "", time.Time{})
	p.cookie(c, sessionCookie, id, expires)
	p.cfg.Logger.Info("audit page: signed in", "principal", pr.String(), "until", expires)
	return c.Redirect(http.StatusSeeOther, "/audit")
}

func (p *AuditPage) logout(c echo.Context) error {
	if s := p.session(c); s != nil && sameToken(s.csrf, c.FormValue("csrf")) {
		ck, _ := c.Cookie(sessionCookie)
		p.mu.Lock()
		delete(p.sessions, ck.Value)
		p.mu.Unlock()
	}
	p.cookie(c, sessionCookie, "", time.Time{})
	return c.Redirect(http.StatusSeeOther, "/audit/login")
}

type listRow struct {
	ID, Time, Kind, Tenant, Principal, Agent, Query, Status string
	Returned, Withheld                                      int
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
	s := p.session(c)
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
	page, err := p.cfg.Reader.List(c.Request().Context(), s.principal, f)
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
			if cand.Decision == audit.Returned {
				row.Returned++
			} else {
				row.Withheld++
			}
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
	Latency            []latencyRow
}

func (p *AuditPage) record(c echo.Context) error {
	s := p.session(c)
	if s == nil {
		return c.Redirect(http.StatusSeeOther, "/audit/login")
	}
	r, err := p.cfg.Reader.Get(c.Request().Context(), s.principal, c.Param("id"))
	if err != nil {
		return p.render(c, Status(err), "list", listData{pageBase: s.base("Not found"), Error: pageError(err)})
	}
	d := recordData{pageBase: s.base("Record " + r.ID), Record: r, Time: r.Time.UTC().Format(time.RFC3339Nano)}
	for _, cand := range r.Results {
		if cand.Decision == audit.Returned {
			d.Returned = append(d.Returned, cand)
		} else {
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
