package filter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/retrieval"
)

// Plan paths (audit.Plan.Path).
const (
	PathTenantAdmin    = "tenant_admin"
	PathPrefilter      = "prefilter"
	PathPostfilterOnly = "postfilter_only"
	PathEmpty          = "empty"
)

// listing is what the engine said about a principal, before any narrowing. It is
// what the cache holds.
type listing struct {
	admin     bool
	projects  []string // sorted, unique
	tickets   []string // sorted, unique
	truncated bool
	// grants are an agent's delegation's stored project#granted tuples, when
	// grantsRead (read with the listing, at the same revision): they decide
	// whether direct shares need listing and bound cached allowances in time.
	grants     []authz.Tuple
	grantsRead bool
}

// prefilter is the store filter for one request and how it was built.
type prefilter struct {
	path   string
	filter retrieval.Filter
	// narrow, when non-nil, is the set of projects a hit must be indexed in
	// (request, intent and token narrowing intersected). It also restricts
	// directly shared tickets, which the store filter admits by ticket id.
	narrow    map[string]bool
	narrowing audit.Narrowing
	plan      audit.Plan
	// rev is the engine revision probed before the first engine call ("" when
	// unknown or not asked): the decision cache's key.
	rev authz.Revision
	// grants are the agent's delegation's grants read with the listing (at
	// rev, when the listing is keyed by it), when grantsRead.
	grants     []authz.Tuple
	grantsRead bool
}

// unavailable wraps a backend failure as clearance.ErrUnavailable, keeping the
// cause's text for the operator's log.
func unavailable(op string, err error) error {
	if errors.Is(err, clearance.ErrUnavailable) {
		return fmt.Errorf("filter: %s: %w", op, err)
	}
	return fmt.Errorf("filter: %s: %v: %w", op, err, clearance.ErrUnavailable)
}

// narrowing intersects every non-empty project restriction. Nil means none. The
// token's narrowing counts even when empty (the token grants no project); the
// request's and intent's empty lists mean "no filter".
func narrowing(p authz.Principal, req Request) (map[string]bool, audit.Narrowing) {
	var rec audit.Narrowing
	var sets [][]string
	if p.Narrowing != nil && p.Narrowing.Projects != nil {
		rec.TokenProjects = slices.Clone(p.Narrowing.Projects)
		sets = append(sets, p.Narrowing.Projects)
	}
	if len(req.Filters.Projects) > 0 {
		rec.FilterProjects = slices.Clone(req.Filters.Projects)
		sets = append(sets, req.Filters.Projects)
	}
	if len(req.Intent.Projects) > 0 {
		rec.IntentProjects = slices.Clone(req.Intent.Projects)
		sets = append(sets, req.Intent.Projects)
	}
	rec.IntentText = req.Intent.Description
	if len(sets) == 0 {
		return nil, rec
	}
	n := make(map[string]bool, len(sets[0]))
	for _, id := range sets[0] {
		n[id] = true
	}
	for _, s := range sets[1:] {
		in := make(map[string]bool, len(s))
		for _, id := range s {
			in[id] = true
		}
		for id := range n {
			if !in[id] {
				delete(n, id)
			}
		}
	}
	return n, rec
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// query is the engine query for principal p at the request's time.
func (pl *Planner) query(p authz.Principal, c authz.Consistency) authz.Query {
	return authz.Query{ContextualTuples: p.ContextualTuples(), Now: pl.cfg.Now(), Consistency: c}
}

// prefilter builds the store filter for p and req.
func (pl *Planner) prefilter(ctx context.Context, p authz.Principal, req Request) (prefilter, error) {
	narrow, rec := narrowing(p, req)
	pf := prefilter{narrow: narrow, narrowing: rec}
	l, hit, err := pl.listing(ctx, p, &pf.plan, &pf.rev)
	if err != nil {
		return pf, err
	}
	pf.plan.CacheHit = hit
	pf.grants, pf.grantsRead = l.grants, l.grantsRead
	pf.filter = retrieval.Filter{Tenant: p.Tenant}
	switch {
	case l.admin || l.truncated:
		pf.path = PathTenantAdmin
		if l.truncated {
			pf.path = PathPostfilterOnly
			pf.plan.Truncated = true
			pf.plan.Notes = append(pf.plan.Notes, "a listing was cut short: tenant filter and post-filter only")
		}
		if narrow == nil {
			pf.filter.AllProjects = true
		} else {
			pf.filter.Projects = sortedKeys(narrow)
		}
		pf.plan.AllowedProjects = len(pf.filter.Projects)
		pf.plan.DirectTickets = len(l.tickets)
	default:
		pf.path = PathPrefilter
		projects := l.projects
		if narrow != nil {
			projects = nil
			for _, id := range l.projects {
				if narrow[id] {
					projects = append(projects, id)
				}
			}
			pf.narrowing.DroppedProjects = len(l.projects) - len(projects)
		}
		pf.filter.Projects = projects
		pf.filter.Tickets = l.tickets
		pf.plan.AllowedProjects = len(projects)
		pf.plan.DirectTickets = len(l.tickets)
		// A narrowing that names no listed project leaves only direct shares, and
		// those must lie in a named project too: nothing to search if none is named.
		if len(projects) == 0 && (len(l.tickets) == 0 || (narrow != nil && len(narrow) == 0)) {
			pf.path = PathEmpty
		}
	}
	if narrow != nil && len(narrow) == 0 {
		pf.path = PathEmpty
	}
	return pf, nil
}

// listing answers from the cache or asks the engine. It records in plan what
// the cache was keyed by.
func (pl *Planner) listing(ctx context.Context, p authz.Principal, plan *audit.Plan, rev *authz.Revision) (listing, bool, error) {
	key, ttl, cacheable := pl.cacheKey(ctx, p, plan, rev)
	if cacheable {
		if l, ok := pl.cache.get(key, pl.cfg.Now()); ok {
			return l, true, nil
		}
	}
	l, err := pl.list(ctx, p)
	if err != nil {
		return l, false, err
	}
	// A truncated listing may be a passing deadline: ask again next time.
	if cacheable && !l.truncated {
		pl.cache.put(key, l, pl.cfg.Now(), ttl)
	}
	return l, false, nil
}

// cacheKey identifies what a listing depends on: the principal (kind, tenant,
// subject, agent, key minter), the model and the engine's tuple revision read before the
// listing (a write during the listing moves the revision, so the entry is never
// served for the new state). A revision that every replica shares (OpenFGA's
// change log) makes a write through any replica visible on the next request;
// only an engine without revisions falls back to a TTL, and the plan says which.
// cacheable is false when the cache is off or the revision is unknown: the
// listing is then asked afresh and not kept. The same probe keys the decision
// cache: *revOut is set to the revision when one was read.
func (pl *Planner) cacheKey(ctx context.Context, p authz.Principal, plan *audit.Plan, revOut *authz.Revision) (key string, ttl time.Duration, cacheable bool) {
	if !pl.cache.enabled() && !pl.decisions.enabled() {
		return "", 0, false
	}
	key = fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%s\x00%s", p.Kind, p.Tenant, p.Subject(), p.Agent, p.KeyMinter, pl.eng.ModelID())
	r, revisioned := pl.eng.(authz.Revisioned)
	if !revisioned {
		if !pl.cache.enabled() {
			return "", 0, false
		}
		plan.CacheTTL = pl.cfg.CacheTTL.String()
		return key, pl.cfg.CacheTTL, true
	}
	rev, err := r.Revision(ctx)
	if err != nil || rev.Key == "" {
		pl.cfg.Logger.Debug("engine revision unknown: pre-filter and decisions not cached", "err", err)
		plan.Notes = append(plan.Notes, "engine revision unknown: pre-filter listed afresh, decisions checked afresh, neither cached")
		return "", 0, false
	}
	plan.Revision = rev.String()
	*revOut = rev
	return key + "\x00" + rev.String(), 0, pl.cache.enabled()
}

// list asks the engine about p and, for a key bounded by its minter, about the
// minter too, and narrows by both: the projects both may view whole, and the
// tickets shared with either (a share only one of them has may still lie in a
// project the other views; the post-filter checks both on every candidate).
func (pl *Planner) list(ctx context.Context, p authz.Principal) (listing, error) {
	m, bounded := p.Minter()
	if !bounded {
		return pl.listOne(ctx, p)
	}
	var own, mint listing
	var ownErr, mintErr error
	var wg sync.WaitGroup
	wg.Go(func() { own, ownErr = pl.listOne(ctx, p) })
	wg.Go(func() { mint, mintErr = pl.listOne(ctx, m) })
	wg.Wait()
	if err := errors.Join(ownErr, mintErr); err != nil {
		return listing{}, err
	}
	return intersect(own, mint), nil
}

// intersect narrows a service account's listing by its key minter's.
func intersect(own, mint listing) listing {
	out := listing{truncated: own.truncated || mint.truncated}
	if mint.admin {
		// The minter sees the whole tenant: the service account's own listing
		// is the narrower one.
		out.projects, out.tickets = own.projects, own.tickets
		return out
	}
	in := map[string]bool{}
	for _, id := range mint.projects {
		in[id] = true
	}
	for _, id := range own.projects {
		if in[id] {
			out.projects = append(out.projects, id)
		}
	}
	shared := map[string]bool{}
	for _, id := range own.tickets {
		shared[id] = true
	}
	for _, id := range mint.tickets {
		shared[id] = true
	}
	out.tickets = sortedKeys(shared)
	return out
}

// listOne asks the engine about one principal. Users may take the tenant-admin
// shortcut; agents never do (their access is the intersection with their grants,
// which only the per-project listing of agent_can_view knows), and service
// accounts cannot be admins.
func (pl *Planner) listOne(ctx context.Context, p authz.Principal) (listing, error) {
	var l listing
	q := pl.query(p, authz.MinimizeLatency)
	if p.Kind == authz.KindUser {
		ok, err := pl.eng.BatchCheck(ctx, q, []authz.Check{{User: p.Subject(), Relation: "admin", Object: "tenant:" + p.Tenant}})
		if err != nil {
			return l, unavailable("check tenant admin", err)
		}
		if len(ok) != 1 {
			return l, unavailable("check tenant admin", fmt.Errorf("engine answered %d results for 1 check", len(ok)))
		}
		if ok[0] {
			l.admin = true
			return l, nil
		}
	}
	// The listings run in parallel: the projects the principal may view and
	// the tickets shared with it directly. Project ids are global, so the
	// first may name projects of another tenant (a role there); they are
	// kept: the store filter carries the tenant, so they widen nothing, and
	// listing the tenant's own projects to drop them cost every search a
	// listing of the whole tenant (ADR planner-tenant-projects).
	//
	// An agent may view a ticket shared with its user when the ticket's
	// project is delegated, even if the user is not a member of that project
	// (ADR planner-agent-direct-shares). A delegated project is always one its
	// delegation holds a project#granted tuple on (same ADR), so the agent's
	// delegation's grants are read instead, in parallel with the rest: when
	// every granted project is among the listed ones, a share the agent may
	// view lies in a listed project already, and the shares are not listed
	// (nor checked: in the benchmark org they rank among the top results and
	// are all denied). Only a grant outside the listed projects makes the
	// planner list the shares, after the rest. The grants also bound cached
	// allowances in time (decisions.go), so that read is not made twice.
	type call struct {
		user, relation, typ string
		ids                 []string
		truncated           bool
		err                 error
	}
	calls := []*call{{user: p.Subject(), relation: p.ViewRelation(), typ: "project"}}
	shares := &call{user: p.Subject(), relation: authz.RelationShared, typ: "ticket"}
	rd, readGrants := pl.eng.(tupleReader)
	readGrants = readGrants && p.Kind == authz.KindAgent
	if !readGrants {
		calls = append(calls, shares)
	}
	var grantsErr error
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() { c.ids, c.truncated, c.err = drain(ctx, pl.eng, q, c.user, c.relation, c.typ) })
	}
	if readGrants {
		wg.Go(func() { l.grants, grantsErr = readDelegationGrants(ctx, rd, p) })
	}
	wg.Wait()
	// The engine reports a listing ended by the caller's cancellation as
	// truncated; that is a failure, not a reason to widen the store query.
	if err := ctx.Err(); err != nil {
		return l, unavailable("list", err)
	}
	if grantsErr != nil {
		return l, unavailable("read the delegation's grants", grantsErr)
	}
	for _, c := range calls {
		if c.err != nil {
			return l, unavailable(fmt.Sprintf("list %s %s of %s", c.typ, c.relation, c.user), c.err)
		}
		l.truncated = l.truncated || c.truncated
	}
	l.grantsRead = readGrants
	if readGrants && !l.truncated && !grantsWithin(l.grants, calls[0].ids) {
		shares.ids, shares.truncated, shares.err = drain(ctx, pl.eng, q, shares.user, shares.relation, shares.typ)
		if err := ctx.Err(); err != nil {
			return l, unavailable("list", err)
		}
		if shares.err != nil {
			return l, unavailable(fmt.Sprintf("list %s %s of %s", shares.typ, shares.relation, shares.user), shares.err)
		}
		l.truncated = shares.truncated
	}
	l.projects = calls[0].ids
	l.tickets = shares.ids
	return l, nil
}

// maxGrants bounds the grants read of one delegation; a delegation with more
// is refused (the request fails) rather than read without a bound. Grants are
// written one project at a time by its user, so this is far above any real one.
const maxGrants = 100000

// readDelegationGrants reads the stored project#granted tuples of p's own
// delegation (an agent's).
func readDelegationGrants(ctx context.Context, rd tupleReader, p authz.Principal) ([]authz.Tuple, error) {
	var out []authz.Tuple
	f := authz.TupleFilter{User: "delegation:" + authz.DelegationID(p.User, p.Agent), Relation: "granted", Object: "project:"}
	for t, err := range rd.Read(ctx, f) {
		if err != nil {
			return nil, err
		}
		if len(out) == maxGrants {
			return nil, fmt.Errorf("delegation %s holds more than %d grants", authz.DelegationID(p.User, p.Agent), maxGrants)
		}
		out = append(out, t)
	}
	return out, ctx.Err()
}

// grantsWithin reports whether every granted project is one of projects (the
// agent's own listing, before the tenant intersection).
func grantsWithin(grants []authz.Tuple, projects []string) bool {
	in := make(map[string]bool, len(projects))
	for _, id := range projects {
		in[id] = true
	}
	for _, g := range grants {
		id, ok := strings.CutPrefix(g.Object, "project:")
		if !ok || !in[id] {
			return false
		}
	}
	return true
}

// drain reads a listing to the end. A truncated listing is reported, not failed.
func drain(ctx context.Context, eng Engine, q authz.Query, user, relation, typ string) ([]string, bool, error) {
	seen := map[string]bool{}
	for id, err := range eng.ListObjects(ctx, q, user, relation, typ) {
		if err != nil {
			if errors.Is(err, authz.ErrTruncated) {
				return nil, true, nil
			}
			return nil, false, err
		}
		seen[id] = true
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	return sortedKeys(seen), false, nil
}
