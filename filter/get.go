package filter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/retrieval"
)

// ErrNotFound is what Get answers for a ticket that is missing and for one the
// principal may not view: the two are indistinguishable by design.
var ErrNotFound = fmt.Errorf("ticket: %w", clearance.ErrNotFound)

// Get returns one ticket if p may view it right now: the ticket's tenant is p's,
// the token's narrowing admits its project, and the engine's check (HIGHER_CONSISTENCY)
// allows it. Anything else answers ErrNotFound, exactly like a missing ticket. The
// decision is audited (kind "ticket", or kind when given).
func (pl *Planner) Get(ctx context.Context, p authz.Principal, ticketID string) (TicketResponse, error) {
	return pl.get(ctx, p, ticketID, "ticket")
}

// GetKind is Get with the audit record's kind (e.g. "mcp_ticket").
func (pl *Planner) GetKind(ctx context.Context, p authz.Principal, ticketID, kind string) (TicketResponse, error) {
	return pl.get(ctx, p, ticketID, kind)
}

func (pl *Planner) get(ctx context.Context, p authz.Principal, ticketID, kind string) (TicketResponse, error) {
	if err := checkPrincipal(p); err != nil {
		return TicketResponse{}, err
	}
	rec := pl.record(p, kind, "")
	rec.Plan.Path = "ticket"
	rec.Plan.Rounds = 1
	var resp TicketResponse
	visible, t, err := pl.visible(ctx, p, ticketID, rec)
	if err == nil {
		rec.Status = string(Exhausted)
		if visible {
			rec.Status = string(Complete)
		}
	}
	if err := pl.finish(ctx, rec, &resp.AuditID, err); err != nil {
		return TicketResponse{}, err
	}
	if !visible {
		return TicketResponse{}, ErrNotFound
	}
	resp.Ticket = t
	return resp, nil
}

// visible decides one ticket and records the decision in rec.
func (pl *Planner) visible(ctx context.Context, p authz.Principal, id string, rec *audit.Record) (bool, retrieval.Ticket, error) {
	start := time.Now()
	defer func() { rec.Latency["total"] = since(start) }()
	t, err := pl.store.Get(ctx, id)
	rec.Latency["search"] = since(start)
	switch {
	case errors.Is(err, clearance.ErrNotFound):
		rec.Plan.Notes = append(rec.Plan.Notes, "not found: "+id)
		return false, t, nil
	case err != nil:
		return false, t, unavailable("get ticket", err)
	case t.Tenant != p.Tenant:
		// Recorded like a missing ticket: the record is read by p's tenant.
		rec.Plan.Notes = append(rec.Plan.Notes, "not found: "+id)
		return false, retrieval.Ticket{}, nil
	}
	rec.Plan.Fetched = 1
	c := audit.Candidate{TicketID: t.ID, Project: t.Project, Decision: audit.NotChecked}
	if n := p.Narrowing; n != nil && n.Projects != nil {
		rec.Narrowing.TokenProjects = slices.Clone(n.Projects)
		if !slices.Contains(n.Projects, t.Project) {
			rec.Narrowing.DroppedProjects = 1
			rec.Results = append(rec.Results, c)
			return false, t, nil
		}
	}
	tc := time.Now()
	ok, err := pl.eng.BatchCheck(ctx, pl.query(p, authz.HigherConsistency),
		[]authz.Check{{User: p.Subject(), Relation: p.ViewRelation(), Object: "ticket:" + t.ID}})
	rec.Latency["check"] = since(tc)
	if err != nil {
		return false, t, unavailable("check ticket", err)
	}
	if len(ok) != 1 {
		return false, t, unavailable("check ticket", fmt.Errorf("engine answered %d results for 1 check", len(ok)))
	}
	rec.Plan.Checked = 1
	c.Decision = audit.Returned
	if !ok[0] {
		c.Decision = audit.DeniedByCheck
		rec.Plan.Denied = 1
	}
	rec.Results = append(rec.Results, c)
	return ok[0], t, nil
}
