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

// decoyProject is the project a read of a missing ticket is checked against.
// '~' is not allowed in project ids (SPEC 10), so it never names a real one.
const decoyProject = "project:clearance~decoy"

// decoy returns q with contextual tuples that give ticket:<id> a project in p's
// tenant, so the check of an id that is missing (or another tenant's) walks
// the same path as the check of a real ticket of p's tenant: the ticket's own
// relations, its project's, the tenant's admins. Its answer is thrown away;
// only its cost matters.
func decoy(q authz.Query, p authz.Principal, id string) authz.Query {
	q.ContextualTuples = append(slices.Clone(q.ContextualTuples),
		authz.Tuple{User: decoyProject, Relation: "project", Object: "ticket:" + id},
		authz.Tuple{User: "tenant:" + p.Tenant, Relation: "tenant", Object: decoyProject},
	)
	return q
}

// visible decides one ticket and records the decision in rec.
//
// Every read costs the same engine work, whether the id is a ticket p may
// see, one p may not see, another tenant's, or none at all: one check of
// ticket:<id> (against a decoy project of p's tenant when the ticket is not
// p's tenant's), whose answer counts only for a ticket of p's tenant that the
// token's narrowing admits. Otherwise the latency of a 404 would tell which
// ids exist in p's tenant (issue 14).
//
// The decision cache keeps that property: reads have cache entries of their
// own (getKey), one per principal and requested id whatever the id names, so a
// read hits exactly when the same principal read the same id since the last
// tuple write, for any id. Searches never fill them (a search's candidates are
// existing tickets: sharing their entries would make a read of an invisible
// ticket that was a search candidate fast and a missing one slow), and every
// write drops them all, even one the cache would drop only a ticket's entries
// for (otherwise a write to an invisible ticket would make its next read slow
// and a missing id's not).
func (pl *Planner) visible(ctx context.Context, p authz.Principal, id string, rec *audit.Record) (bool, retrieval.Ticket, error) {
	start := time.Now()
	defer func() { rec.Latency["total"] = since(start) }()
	// The revision before any engine call, as for searches.
	state := pl.decisionStateNow(ctx)
	t, err := pl.store.Get(ctx, id)
	rec.Latency["search"] = since(start)
	ours := false
	switch {
	case errors.Is(err, clearance.ErrNotFound):
		rec.Plan.Notes = append(rec.Plan.Notes, "not found: "+id)
	case err != nil:
		return false, t, unavailable("get ticket", err)
	case t.Tenant != p.Tenant:
		// Recorded like a missing ticket: the record is read by p's tenant.
		rec.Plan.Notes = append(rec.Plan.Notes, "not found: "+id)
		t = retrieval.Ticket{}
	default:
		ours = true
	}
	now := pl.cfg.Now()
	q := pl.query(p, authz.HigherConsistency)
	q.Now = now
	if !ours {
		q = decoy(q, p, id)
	}
	admitted := ours
	c := audit.Candidate{TicketID: t.ID, Project: t.Project, Decision: audit.NotChecked}
	if ours {
		rec.Plan.Fetched = 1
		if n := p.Narrowing; n != nil && n.Projects != nil {
			rec.Narrowing.TokenProjects = slices.Clone(n.Projects)
			if !slices.Contains(n.Projects, t.Project) {
				rec.Narrowing.DroppedProjects = 1
				admitted = false
			}
		}
	}
	tc := time.Now()
	// Every check must allow: the principal's own, and a key minter's (the
	// decoy makes both cost the same for a missing id).
	key := getKey(p, id, ours)
	allowed, cached := pl.cachedGet(state, key, now)
	if !cached {
		checks := p.ViewChecks("ticket:" + id)
		ok, err := pl.eng.BatchCheck(ctx, q, checks)
		if err != nil {
			return false, t, unavailable("check ticket", err)
		}
		if len(ok) != len(checks) {
			return false, t, unavailable("check ticket", fmt.Errorf("engine answered %d results for %d checks", len(ok), len(checks)))
		}
		allowed = !slices.Contains(ok, false)
		pl.keepGet(ctx, state, p, key, allowed, now)
	}
	if !ours {
		return false, t, nil
	}
	if !admitted {
		rec.Results = append(rec.Results, c)
		return false, t, nil
	}
	rec.Latency["check"] = since(tc)
	rec.Plan.Checked = 1
	if cached {
		rec.Plan.CachedDecisions = 1
	}
	c.Decision = audit.Returned
	if !allowed {
		c.Decision = audit.DeniedByCheck
		rec.Plan.Denied = 1
	}
	rec.Results = append(rec.Results, c)
	return allowed, t, nil
}

// getEntries indexes every read's cache entry: the decision cache drops it on
// every revision move (decisionCache.at).
const getEntries = "\x00get"

// getKey is the decision cache key of a read of id by p: the principal's
// prefix, and whether the check was of p's own tenant's ticket or the decoy
// (different questions, so different answers).
func getKey(p authz.Principal, id string, ours bool) string {
	kind := "gd:"
	if ours {
		kind = "g:"
	}
	return decisionPrefix(p) + kind + id
}

// decisionStateNow reads the revision a request's cached decisions are keyed
// by; the zero state (no caching) when the cache is off or the revision is
// unknown.
func (pl *Planner) decisionStateNow(ctx context.Context) decisionState {
	r, ok := pl.eng.(authz.Revisioned)
	if !pl.decisions.enabled() || !ok {
		return decisionState{}
	}
	rev, err := r.Revision(ctx)
	if err != nil {
		pl.cfg.Logger.Debug("filter: engine revision unknown: ticket read not cached", "err", err)
		return decisionState{}
	}
	return decisionState{model: pl.eng.ModelID(), rev: rev}
}

// cachedGet answers a read's check from the cache.
func (pl *Planner) cachedGet(state decisionState, key string, now time.Time) (allowed, found bool) {
	if !state.ok() {
		return false, false
	}
	a, f := pl.decisions.get(state, []string{key}, now)
	return a[0], f[0]
}

// keepGet stores a read's answer, with the same time bounds as a search's.
func (pl *Planner) keepGet(ctx context.Context, state decisionState, p authz.Principal, key string, allowed bool, now time.Time) {
	if !state.ok() {
		return
	}
	e := decisionEntry{key: key, ticket: getEntries, allowed: allowed, from: now}
	if allowed {
		until, err := pl.decisionBounds(ctx, p, now)
		if err != nil {
			return
		}
		e.until = until
	}
	pl.decisions.put(state, []decisionEntry{e})
}
