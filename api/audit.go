package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/indexer"
)

// ScopeAudit lets an operator read every tenant's audit records.
const ScopeAudit = "clearance:audit"

// AuditReader answers GET /v1/audit and GET /v1/audit/{id} and feeds the /audit
// page. Operators (a user token with clearance:audit) read every record; a
// tenant's admins (engine: user:<sub> admin tenant:<tenant>) read their tenant's
// only, with every ticket they may not view withheld (see redact); everyone else
// is refused. Agents and service accounts never read the audit log: it records
// what they were given.
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
	if tenant == "" {
		return a.Log.List(ctx, f)
	}
	if f.Tenant != "" && f.Tenant != tenant {
		return audit.Page{}, fmt.Errorf("tenant admins read only their own tenant's records: %w", clearance.ErrForbidden)
	}
	f.Tenant = tenant
	if f.Ticket != "" {
		// A ticket the admin may not view answers like one no record names, and
		// before the log is read, so neither the body nor the work done depends on
		// whether records name it: the filter cannot probe for tickets.
		ok, err := a.canView(ctx, p, f.Ticket)
		if err != nil {
			return audit.Page{}, err
		}
		if !ok {
			return audit.Page{}, nil
		}
	}
	page, err := a.Log.List(ctx, f)
	if err != nil {
		return audit.Page{}, err
	}
	recs := make([]*audit.Record, len(page.Records))
	for i := range page.Records {
		recs[i] = &page.Records[i]
	}
	if err := a.redact(ctx, p, recs); err != nil {
		return audit.Page{}, err
	}
	return page, nil
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
	if err != nil || tenant == "" {
		return r, err
	}
	if err := a.redact(ctx, p, []*audit.Record{r}); err != nil {
		return nil, err
	}
	return r, nil
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

// WithheldTicket stands in, in what a tenant admin reads, for the id of a ticket
// the admin may not view (SPEC 1.1). It is not a valid ticket id, so it can never
// be mistaken for one, and a ticket= filter naming it matches nothing.
const WithheldTicket = "(withheld)"

// notFoundNote is how the planner notes a ticket read of a missing (or another
// tenant's) ticket: the requested id follows.
const notFoundNote = "not found: "

// ticketObject finds engine object names in an error text.
var ticketObject = regexp.MustCompile(`ticket:([A-Za-z0-9][A-Za-z0-9._-]{0,127})`)

// canView asks the engine, fresh, whether p may view the ticket now. An id that
// cannot be a ticket is not viewable and costs no engine call.
func (a *AuditReader) canView(ctx context.Context, p authz.Principal, ticket string) (bool, error) {
	if !indexer.ValidID(ticket) {
		return false, nil
	}
	ok, err := a.Engine.Check(ctx, authz.Query{Consistency: authz.HigherConsistency},
		authz.Check{User: "user:" + p.User, Relation: "can_view", Object: "ticket:" + ticket})
	if err != nil {
		return false, fmt.Errorf("audit: may the reader view the filtered ticket: %w", err)
	}
	return ok, nil
}

// redact withholds from recs every ticket p may not view right now: a tenant
// admin reads the tenant's decisions, but a ticket that blocks the admin stays
// invisible to the admin here too (SPEC 1.1). One BatchCheck (HIGHER_CONSISTENCY,
// so a new block shows at once) answers every distinct ticket of the page. A
// withheld candidate keeps only its decision, so the returned and withheld counts
// stay true; its id becomes WithheldTicket and its project, chunk and score are
// cleared. Notes and the error lose the ids too. Such a record answers without
// its hash, which commits to the withheld values and would let a guess of them be
// confirmed offline; and every record answers without prev_hash, the previous
// record's hash, for the same reason (tenant admins cannot verify the chain,
// which interleaves tenants, anyway). The log itself is never changed. Any engine
// failure fails the whole read.
func (a *AuditReader) redact(ctx context.Context, p authz.Principal, recs []*audit.Record) error {
	viewable := map[string]bool{}
	var checks []authz.Check
	var asked []string
	mention := func(id string) {
		if _, seen := viewable[id]; seen {
			return
		}
		viewable[id] = false // until the engine says otherwise
		if indexer.ValidID(id) {
			checks = append(checks, authz.Check{User: "user:" + p.User, Relation: "can_view", Object: "ticket:" + id})
			asked = append(asked, id)
		}
	}
	for _, r := range recs {
		for _, c := range r.Results {
			mention(c.TicketID)
		}
		for _, n := range r.Plan.Notes {
			if id, ok := strings.CutPrefix(n, notFoundNote); ok {
				mention(id)
			}
		}
		for _, m := range ticketObject.FindAllStringSubmatch(r.Error, -1) {
			mention(m[1])
		}
	}
	if len(checks) > 0 {
		ok, err := a.Engine.BatchCheck(ctx, authz.Query{Consistency: authz.HigherConsistency}, checks)
		if err != nil {
			return fmt.Errorf("audit: which tickets may the reader view: %w", err)
		}
		if len(ok) != len(checks) {
			return fmt.Errorf("audit: the engine answered %d results for %d checks: %w", len(ok), len(checks), clearance.ErrUnavailable)
		}
		for i, id := range asked {
			viewable[id] = ok[i]
		}
	}
	for _, r := range recs {
		redactRecord(r, viewable)
	}
	return nil
}

// redactRecord applies the engine's answers to one record (see redact).
func redactRecord(r *audit.Record, viewable map[string]bool) {
	n := 0
	if slices.ContainsFunc(r.Results, func(c audit.Candidate) bool { return !viewable[c.TicketID] }) {
		res := slices.Clone(r.Results) // never write through to the log's memory
		for i, c := range res {
			if !viewable[c.TicketID] {
				res[i] = audit.Candidate{TicketID: WithheldTicket, Decision: c.Decision}
				n++
			}
		}
		r.Results = res
	}
	hide := func(s string) string {
		if id, ok := strings.CutPrefix(s, notFoundNote); ok && !viewable[id] {
			return notFoundNote + WithheldTicket
		}
		return withholdIDs(s, viewable)
	}
	var notes []string
	for i, note := range r.Plan.Notes {
		if h := hide(note); h != note {
			if notes == nil {
				notes = slices.Clone(r.Plan.Notes)
			}
			notes[i] = h
			n++
		}
	}
	if notes != nil {
		r.Plan.Notes = notes
	}
	if h := hide(r.Error); h != r.Error {
		r.Error = h
		n++
	}
	r.Redacted = n
	r.PrevHash = ""
	if n > 0 {
		r.Hash = ""
	}
}

// withholdIDs replaces, in free text, every whole id (a maximal run of ticket id
// characters) that names a ticket known to be withheld.
func withholdIDs(s string, viewable map[string]bool) string {
	isIDChar := func(b byte) bool {
		return b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-'
	}
	var b strings.Builder
	changed := false
	for i := 0; i < len(s); {
		if !isIDChar(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && isIDChar(s[j]) {
			j++
		}
		if ok, known := viewable[s[i:j]]; known && !ok {
			b.WriteString(WithheldTicket)
			changed = true
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	if !changed {
		return s
	}
	return b.String()
}
