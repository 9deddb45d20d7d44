package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/authz"
)

// GrantEvent is one grant or revocation, for the audit trail.
type GrantEvent struct {
	Time   time.Time       `json:"time"`
	Action string          `json:"action"` // "grant" or "revoke"
	By     authz.Principal `json:"by"`
	Grants []Grant         `json:"grants"`
}

// GrantRecorder receives every grant and revocation (the audit log implements
// it). An error is logged; the engine write has already happened.
type GrantRecorder interface {
	RecordGrant(ctx context.Context, e GrantEvent) error
}

// Grant is one user's consent for one agent on one project.
type Grant struct {
	User      string     `json:"user"`
	Agent     string     `json:"agent"`
	Project   string     `json:"project"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// maxGrantProjects caps one POST /v1/grants.
const maxGrantProjects = 100

// conditionNotExpired is the model's expiry condition on granted tuples.
const conditionNotExpired = "not_expired"

func (s *Server) registerGrants(g *echo.Group) {
	g.POST("/grants", s.createGrants)
	g.GET("/grants", s.listGrants)
	g.DELETE("/grants/:agent", s.revokeGrants)
}

func (s *Server) engine() (authz.Engine, error) {
	if s.deps.Engine == nil {
		return nil, fmt.Errorf("no authorization engine: %w", clearance.ErrUnavailable)
	}
	return s.deps.Engine, nil
}

type grantRequest struct {
	Agent     string     `json:"agent"`
	Projects  []string   `json:"projects"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (r *grantRequest) validate(now time.Time) error {
	if !auth.ValidID(r.Agent) {
		return clearance.Invalid("agent", "is required and must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
	}
	if len(r.Projects) == 0 || len(r.Projects) > maxGrantProjects {
		return clearance.Invalid("projects", "must name 1 to %d projects", maxGrantProjects)
	}
	for i, p := range r.Projects {
		if !auth.ValidID(p) {
			return clearance.Invalid(fmt.Sprintf("projects[%d]", i), "is not a valid project id")
		}
	}
	if r.ExpiresAt != nil && !r.ExpiresAt.After(now) {
		return clearance.Invalid("expires_at", "must be in the future")
	}
	return nil
}

func delegationObject(user, agent string) string {
	return "delegation:" + authz.DelegationID(user, agent)
}

func grantedTuple(user, agent, project string, expires *time.Time) authz.Tuple {
	t := authz.Tuple{User: delegationObject(user, agent), Relation: "granted", Object: "project:" + project}
	if expires != nil {
		t.Condition = &authz.Condition{Name: conditionNotExpired, Context: map[string]any{"expires_at": expires.UTC().Format(time.RFC3339)}}
	}
	return t
}

// createGrants: a user consents for themselves only; an agent token can never
// create or widen a grant, and only projects the user can view now (in their
// tenant, within their token's narrowing) may be granted.
func (s *Server) createGrants(c echo.Context) error {
	p, err := PrincipalFrom(c)
	if err != nil {
		return err
	}
	if p.Kind != authz.KindUser {
		return fmt.Errorf("grants are made by users for themselves, not by %s principals: %w", p.Kind, clearance.ErrForbidden)
	}
	e, err := s.engine()
	if err != nil {
		return err
	}
	var req grantRequest
	if err := decodeStrict(c.Request().Body, &req); err != nil {
		return err
	}
	now := time.Now()
	if err := req.validate(now); err != nil {
		return err
	}
	slices.Sort(req.Projects)
	req.Projects = slices.Compact(req.Projects)
	ctx := c.Request().Context()
	// Per project: the user can view it now, and it is in the user's tenant. A
	// project the user cannot see answers exactly like one that does not exist.
	checks := make([]authz.Check, 0, 2*len(req.Projects))
	for _, pr := range req.Projects {
		checks = append(checks,
			authz.Check{User: p.Subject(), Relation: authz.RelationCanView, Object: "project:" + pr},
			authz.Check{User: "tenant:" + p.Tenant, Relation: "tenant", Object: "project:" + pr})
	}
	ok, err := e.BatchCheck(ctx, authz.Query{Consistency: authz.HigherConsistency, Now: now}, checks)
	if err != nil {
		return fmt.Errorf("grant check: %w", err)
	}
	for i, pr := range req.Projects {
		narrowed := p.Narrowing != nil && !slices.Contains(p.Narrowing.Projects, pr)
		if !ok[2*i] || !ok[2*i+1] || narrowed {
			return clearance.Invalid(fmt.Sprintf("projects[%d]", i), "%q is not a project you can view", pr)
		}
	}
	existing, err := s.readGrants(ctx, p.User, req.Agent)
	if err != nil {
		return err
	}
	var writes, stale []authz.Tuple
	grants := make([]Grant, 0, len(req.Projects))
	for _, pr := range req.Projects {
		t := grantedTuple(p.User, req.Agent, pr, req.ExpiresAt)
		if old, ok := existing[pr]; ok {
			if sameCondition(old.Condition, t.Condition) {
				grants = append(grants, Grant{User: p.User, Agent: req.Agent, Project: pr, ExpiresAt: req.ExpiresAt})
				continue
			}
			// A changed expiry replaces the tuple (the engine keeps one per key).
			stale = append(stale, authz.Tuple{User: old.User, Relation: old.Relation, Object: old.Object})
		}
		writes = append(writes, t)
		grants = append(grants, Grant{User: p.User, Agent: req.Agent, Project: pr, ExpiresAt: req.ExpiresAt})
	}
	if len(stale) > 0 {
		if err := e.Write(ctx, nil, stale); err != nil {
			return fmt.Errorf("replace grants: %w", err)
		}
	}
	if len(writes) > 0 {
		d := delegationObject(p.User, req.Agent)
		writes = append(writes,
			authz.Tuple{User: p.Subject(), Relation: "delegator", Object: d},
			authz.Tuple{User: "agent:" + req.Agent, Relation: "agent", Object: d})
		if err := e.Write(ctx, writes, nil); err != nil {
			return fmt.Errorf("write grants: %w", err)
		}
	}
	s.recordGrants(ctx, "grant", p, grants)
	return c.JSON(http.StatusCreated, map[string]any{"grants": grants})
}

func sameCondition(a, b *authz.Condition) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Name == b.Name && fmt.Sprint(a.Context["expires_at"]) == fmt.Sprint(b.Context["expires_at"])
}

// readGrants returns user's granted tuples for agent, by project.
func (s *Server) readGrants(ctx context.Context, user, agent string) (map[string]authz.Tuple, error) {
	e, err := s.engine()
	if err != nil {
		return nil, err
	}
	out := map[string]authz.Tuple{}
	for t, err := range e.Read(ctx, authz.TupleFilter{User: delegationObject(user, agent), Relation: "granted", Object: "project:"}) {
		if err != nil {
			return nil, fmt.Errorf("read grants: %w", err)
		}
		out[strings.TrimPrefix(t.Object, "project:")] = t
	}
	return out, nil
}

// agentsOf lists the agents user has delegated to (delegator tuples).
func (s *Server) agentsOf(ctx context.Context, user string) ([]string, error) {
	e, err := s.engine()
	if err != nil {
		return nil, err
	}
	var agents []string
	prefix := "delegation:" + user + "~"
	for t, err := range e.Read(ctx, authz.TupleFilter{User: "user:" + user, Relation: "delegator", Object: "delegation:"}) {
		if err != nil {
			return nil, fmt.Errorf("read delegations: %w", err)
		}
		if a, ok := strings.CutPrefix(t.Object, prefix); ok {
			agents = append(agents, a)
		}
	}
	slices.Sort(agents)
	return agents, nil
}

// grantTarget resolves whose grants the caller manages: their own, or with
// ?user= another user's (tenant admins within their tenant, operators). The
// returned tenant confines an admin's view to their tenant's projects ("" for
// the user's own grants and for operators).
func (s *Server) grantTarget(c echo.Context) (authz.Principal, string, string, error) {
	p, err := PrincipalFrom(c)
	if err != nil {
		return p, "", "", err
	}
	if p.Kind != authz.KindUser {
		return p, "", "", fmt.Errorf("grants are managed by users, not by %s principals: %w", p.Kind, clearance.ErrForbidden)
	}
	user := c.QueryParam("user")
	if user == "" || user == p.User {
		return p, p.User, "", nil
	}
	if !auth.ValidSubject(user) {
		return p, "", "", clearance.Invalid("user", "is not a valid user id")
	}
	if err := s.tenantAdmin(c.Request().Context(), p, p.Tenant); err != nil {
		return p, "", "", err
	}
	if p.HasScope(ScopeAdmin) {
		return p, user, "", nil
	}
	return p, user, p.Tenant, nil
}

// inTenant keeps the grants whose project belongs to tenant ("" keeps all).
func (s *Server) inTenant(ctx context.Context, tenant string, gs []Grant) ([]Grant, error) {
	if tenant == "" || len(gs) == 0 {
		return gs, nil
	}
	checks := make([]authz.Check, len(gs))
	for i, g := range gs {
		checks[i] = authz.Check{User: "tenant:" + tenant, Relation: "tenant", Object: "project:" + g.Project}
	}
	ok, err := s.deps.Engine.BatchCheck(ctx, authz.Query{Consistency: authz.HigherConsistency}, checks)
	if err != nil {
		return nil, fmt.Errorf("grant tenant check: %w", err)
	}
	out := gs[:0]
	for i, g := range gs {
		if ok[i] {
			out = append(out, g)
		}
	}
	return out, nil
}

func toGrant(user, agent string, t authz.Tuple) Grant {
	g := Grant{User: user, Agent: agent, Project: strings.TrimPrefix(t.Object, "project:")}
	if t.Condition != nil {
		if v, ok := t.Condition.Context["expires_at"].(string); ok {
			if tm, err := time.Parse(time.RFC3339Nano, v); err == nil {
				g.ExpiresAt = &tm
			}
		}
	}
	return g
}

func (s *Server) grantsOf(ctx context.Context, user, agent string) ([]Grant, error) {
	ts, err := s.readGrants(ctx, user, agent)
	if err != nil {
		return nil, err
	}
	out := make([]Grant, 0, len(ts))
	for _, t := range ts {
		out = append(out, toGrant(user, agent, t))
	}
	slices.SortFunc(out, func(a, b Grant) int { return strings.Compare(a.Project, b.Project) })
	return out, nil
}

func (s *Server) listGrants(c echo.Context) error {
	_, user, tenant, err := s.grantTarget(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	agents, err := s.agentsOf(ctx, user)
	if err != nil {
		return err
	}
	all := []Grant{}
	for _, a := range agents {
		gs, err := s.grantsOf(ctx, user, a)
		if err != nil {
			return err
		}
		all = append(all, gs...)
	}
	all, err = s.inTenant(ctx, tenant, all)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"grants": all})
}

// revokeGrants deletes the agent's grants (one project with ?project=); when
// none remain, the delegation's delegator and agent tuples go too.
func (s *Server) revokeGrants(c echo.Context) error {
	p, user, tenant, err := s.grantTarget(c)
	if err != nil {
		return err
	}
	agent := c.Param("agent")
	if !auth.ValidID(agent) {
		return clearance.Invalid("agent", "is not a valid agent id")
	}
	project := c.QueryParam("project")
	if project != "" && !auth.ValidID(project) {
		return clearance.Invalid("project", "is not a valid project id")
	}
	ctx := c.Request().Context()
	all, err := s.grantsOf(ctx, user, agent)
	if err != nil {
		return err
	}
	visible, err := s.inTenant(ctx, tenant, slices.Clone(all))
	if err != nil {
		return err
	}
	var revoke []Grant
	for _, g := range visible {
		if project == "" || g.Project == project {
			revoke = append(revoke, g)
		}
	}
	if len(revoke) == 0 {
		return fmt.Errorf("no grant to agent %q: %w", agent, clearance.ErrNotFound)
	}
	deletes := make([]authz.Tuple, 0, len(revoke)+2)
	for _, g := range revoke {
		deletes = append(deletes, authz.Tuple{User: delegationObject(user, agent), Relation: "granted", Object: "project:" + g.Project})
	}
	if len(revoke) == len(all) {
		d := delegationObject(user, agent)
		deletes = append(deletes,
			authz.Tuple{User: "user:" + user, Relation: "delegator", Object: d},
			authz.Tuple{User: "agent:" + agent, Relation: "agent", Object: d})
	}
	e, err := s.engine()
	if err != nil {
		return err
	}
	if err := e.Write(ctx, nil, deletes); err != nil {
		return fmt.Errorf("revoke grants: %w", err)
	}
	s.recordGrants(ctx, "revoke", p, revoke)
	return c.JSON(http.StatusOK, map[string]any{"revoked": revoke})
}

func (s *Server) recordGrants(ctx context.Context, action string, by authz.Principal, gs []Grant) {
	projects := make([]string, len(gs))
	for i, g := range gs {
		projects[i] = g.Project
	}
	var user, agent string
	if len(gs) > 0 {
		user, agent = gs[0].User, gs[0].Agent
	}
	s.log.Info("grants: "+action, "by", by.String(), "user", user, "agent", agent, "projects", projects)
	if s.deps.GrantEvents == nil {
		return
	}
	if err := s.deps.GrantEvents.RecordGrant(ctx, GrantEvent{Time: time.Now().UTC(), Action: action, By: by, Grants: gs}); err != nil {
		s.log.Error("grants: audit hook failed", "action", action, "user", user, "agent", agent, "err", err)
	}
}
