package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
)

// ScopeAudit lets an operator read every tenant's audit records.
const ScopeAudit = "clearance:audit"

// AuditReader answers GET /v1/audit and GET /v1/audit/{id} and feeds the /audit
// page. Operators (a user token with clearance:audit) read every record; a
// tenant's admins (engine: user:<sub> admin tenant:<tenant>) read their tenant's
// only; everyone else is refused. Agents and service accounts never read the
// audit log: it records what they were given.
type AuditReader struct {
	Log    audit.Reader
	Engine authz.Engine
	Logger *slog.Logger
}

// reach returns the tenant p is confined to ("" for operators, who see all).
func (a *AuditReader) reach(ctx context.Context, p authz.Principal) (string, error) {
	if p.Kind != authz.KindUser {
		return "", fmt.Errorf("the audit log is read by operators and tenant admins, not by %s principals: %w", p.Kind, clearance.ErrForbidden)
	}
	if p.HasScope(ScopeAudit) {
		return "", nil
	}
	// Not an operator: the tenant's admins may read their own tenant. A refusal
	// names the operator scope (403 insufficient_scope).
	refused := fmt.Errorf("reading the audit log needs the tenant's admin role, or: %w", &ScopeError{Scopes: []string{ScopeAudit}})
	if p.Tenant == "" || a.Engine == nil {
		return "", refused
	}
	ok, err := a.Engine.Check(ctx, authz.Query{Consistency: authz.HigherConsistency},
		authz.Check{User: "user:" + p.User, Relation: "admin", Object: "tenant:" + p.Tenant})
	if err != nil {
		// Fail closed: no answer from the engine is no access.
		return "", fmt.Errorf("audit access check: %w", err)
	}
	if !ok {
		return "", refused
	}
	return p.Tenant, nil
}

// List answers the records p may read that match f, newest first.
func (a *AuditReader) List(ctx context.Context, p authz.Principal, f audit.Filter) (audit.Page, error) {
	tenant, err := a.reach(ctx, p)
	if err != nil {
		return audit.Page{}, err
	}
	if tenant != "" {
		if f.Tenant != "" && f.Tenant != tenant {
			return audit.Page{}, fmt.Errorf("tenant admins read only their own tenant's records: %w", clearance.ErrForbidden)
		}
		f.Tenant = tenant
	}
	return a.Log.List(ctx, f)
}

// Get answers one record; another tenant's record answers exactly like a missing
// one.
func (a *AuditReader) Get(ctx context.Context, p authz.Principal, id string) (*audit.Record, error) {
	tenant, err := a.reach(ctx, p)
	if err != nil {
		return nil, err
	}
	notFound := fmt.Errorf("audit record %q: %w", id, clearance.ErrNotFound)
	if !audit.ValidID(id) {
		return nil, notFound
	}
	r, err := a.Log.Get(ctx, id)
	if errors.Is(err, clearance.ErrNotFound) || (err == nil && tenant != "" && r.Tenant != tenant) {
		return nil, notFound
	}
	return r, err
}

// Register adds GET /v1/audit and GET /v1/audit/:id to g (the /v1 group behind
// the bearer-token middleware). principal returns the verified principal that
// middleware stored. Errors go to the server's error table.
func (a *AuditReader) Register(g *echo.Group, principal func(echo.Context) (authz.Principal, error)) {
	g.GET("/audit", func(c echo.Context) error {
		p, err := principal(c)
		if err != nil {
			return err
		}
		f, err := parseAuditFilter(c.QueryParams())
		if err != nil {
			return err
		}
		page, err := a.List(c.Request().Context(), p, f)
		if err != nil {
			return err
		}
		if page.Records == nil {
			page.Records = []audit.Record{}
		}
		return c.JSON(http.StatusOK, page)
	})
	g.GET("/audit/:id", func(c echo.Context) error {
		p, err := principal(c)
		if err != nil {
			return err
		}
		r, err := a.Get(c.Request().Context(), p, c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, r)
	})
}

// AuditGrants records every grant and revocation in the audit log (the server's
// GrantRecorder), as records of kind "grant" or "revoke".
type AuditGrants struct {
	Log audit.Log
}

// RecordGrant appends one record for the event.
func (g *AuditGrants) RecordGrant(ctx context.Context, e GrantEvent) error {
	r := &audit.Record{Time: e.Time, Kind: e.Action, Tenant: e.By.Tenant, Principal: e.By, Status: "complete"}
	for _, gr := range e.Grants {
		r.Grants = append(r.Grants, audit.GrantChange{User: gr.User, Agent: gr.Agent, Project: gr.Project, ExpiresAt: gr.ExpiresAt})
	}
	return g.Log.Append(ctx, r)
}

// auditParams are the query parameters of GET /v1/audit.
var auditParams = map[string]bool{"tenant": true, "principal": true, "agent": true, "ticket": true,
	"since": true, "until": true, "cursor": true, "after": true, "limit": true}

// parseAuditFilter reads the query parameters of GET /v1/audit (and the page).
// Unknown parameters are errors, like unknown JSON fields.
func parseAuditFilter(q url.Values) (audit.Filter, error) {
	for k := range q {
		if !auditParams[k] {
			return audit.Filter{}, clearance.Invalid(k, "unknown parameter")
		}
	}
	f := audit.Filter{
		Tenant: q.Get("tenant"), Principal: q.Get("principal"), Agent: q.Get("agent"), Ticket: q.Get("ticket"),
		Cursor: q.Get("cursor"), After: q.Get("after"),
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(t.name)
		if v == "" {
			continue
		}
		tm, err := parseTime(v)
		if err != nil {
			return audit.Filter{}, clearance.Invalid(t.name, "want an RFC 3339 time, e.g. 2026-11-01T10:00:00Z")
		}
		*t.dst = tm
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return audit.Filter{}, clearance.Invalid("limit", "want an integer 1..%d", audit.MaxListLimit)
		}
		f.Limit = n
	}
	return f, f.Validate()
}

// parseTime accepts RFC 3339 and the HTML datetime-local form (taken as UTC).
func parseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("bad time")
}
