package filter

import (
	"context"
	"slices"
	"strings"

	"github.com/clearance-dev/clearance/authz"
)

// Service accounts of an object, read from its direct tuples.
//
// OpenFGA's ListUsers for user type service_account walks the whole rewrite of
// can_view, expanding every team#member userset on the way, though no service
// account can be a team member: a destination's service-account listing costs
// about what its user listing does (issue 16's profile). In clearance's own
// model (authz/model.fga) a service account reaches the relations the flow
// check lists only through direct tuples:
//
//   - project#can_view = member or viewer or admin from tenant, where member =
//     [user, team#member, service_account] or owner, owner = [user,
//     team#member], viewer = [user, team#member, service_account] and
//     tenant#admin = [user, team#member]; team#member = [user, team#member]
//     holds no service account. So: the service_account users of the
//     project's direct member and viewer tuples.
//   - ticket#shared = viewer or editor, both [user, team#member,
//     service_account]: the direct viewer and editor tuples.
//   - ticket#blocked = [user, team#member, service_account]: the direct
//     blocked tuples (a blocked team holds no service account).
//   - ticket#can_view = (shared or can_view from project) but not blocked, with
//     project = [project]: (shared ∪ can_view of each project the ticket's
//     project tuples name) − blocked.
//
// No relation has a wildcard or a condition on these paths. The users of a
// ticket's shares and blocks come from its direct tuples too (directUsers).
// TestModelServiceAccountPaths
// checks these facts on the model by walking its rewrites, so a model change
// that adds a path fails the tests; the checker takes this way only for engines
// that evaluate clearance's own model (authz.ClearanceModeled), any other
// model gets the engine's ListUsers.

// directSA answers the service accounts with relation on object from direct
// tuples, when clearance's model admits it for that (object type, relation);
// ok false: ask the engine.
func (f *Flow) directSA(ctx context.Context, q authz.Query, object, relation string) (users []string, ok bool, err error) {
	typ, _, _ := strings.Cut(object, ":")
	var want map[string]bool // direct relations whose service accounts count
	switch {
	case typ == "team" && relation == "member":
		return nil, true, nil // team#member = [user, team#member]: never a service account
	case typ == "project" && relation == authz.RelationCanView:
		want = map[string]bool{"member": true, "viewer": true}
	case typ == "ticket" && relation == "shared":
		want = map[string]bool{"viewer": true, "editor": true}
	case typ == "ticket" && relation == "blocked":
		want = map[string]bool{"blocked": true}
	case typ == "ticket" && relation == authz.RelationCanView:
		want = map[string]bool{"viewer": true, "editor": true}
	default:
		return nil, false, nil
	}
	var blocked, projects []string
	for t, err := range f.eng.Read(ctx, authz.TupleFilter{Object: object}) {
		if err != nil {
			return nil, false, unavailable("read service accounts", err)
		}
		isSA := strings.HasPrefix(t.User, "service_account:") && !strings.Contains(t.User, "#")
		switch {
		case t.Condition != nil && (want[t.Relation] || t.Relation == "blocked" || t.Relation == "project"):
			// Not a tuple clearance's model admits there: let the engine
			// decide what it means.
			return nil, false, nil
		case isSA && want[t.Relation]:
			users = append(users, t.User)
		case isSA && t.Relation == "blocked" && typ == "ticket":
			blocked = append(blocked, t.User)
		case t.Relation == "project" && typ == "ticket":
			projects = append(projects, t.User)
		}
	}
	if typ == "ticket" && relation == authz.RelationCanView {
		for _, p := range projects {
			if !strings.HasPrefix(p, "project:") || strings.Contains(p, "#") {
				return nil, false, nil
			}
			more, err := f.listUsers(ctx, q, p, authz.RelationCanView, "service_account")
			if err != nil {
				return nil, false, err
			}
			users = append(users, more...)
		}
		slices.Sort(blocked)
		users = slices.DeleteFunc(users, func(u string) bool {
			_, found := slices.BinarySearch(blocked, u)
			return found
		})
	}
	slices.Sort(users)
	return slices.Compact(users), true, nil
}

// directUsers answers the users (type user) of a ticket's can_view, shared or
// blocked relation, or of a project's can_view, from its direct tuples, when clearance's model admits it; ok false:
// ask the engine. ticket#shared = viewer or editor and ticket#blocked are
// [user, team#member, service_account] (TestModelServiceAccountPaths): their
// users are the direct user tuples and the members of each team whose
// team#member userset is there, listed by the engine (ListUsers of
// team#member, nested teams expanded by it). Most tickets' shares and blocks
// name users directly, so the listing costs a Read.
//
// A project's can_view is taken apart the same way: project#can_view = member
// or viewer or admin from tenant, with member = [user, team#member,
// service_account] or owner, owner = [user, team#member], viewer = [user,
// team#member, service_account] and tenant = [tenant], none excluded,
// intersected or conditioned. So its users are the direct user tuples of
// member, owner and viewer, the members of each team named there and the
// admins of each tenant its tenant tuples name (ListUsers of tenant#admin).
// A ticket's can_view is (shared or can_view from project) but not blocked, as
// for the service accounts above, with the users of each part taken apart
// the same way.
//
// OpenFGA's ListUsers of the whole project costs several times its parts (on
// the benchmark's org, 20 ms for a project a department and two teams can
// view, against 3 ms for the department's listing; issue 16), and the parts
// (a team, the tenant's admins) are shared by the projects of a check and
// kept across checks.
func (f *Flow) directUsers(ctx context.Context, q authz.Query, object, relation string) (users []string, ok bool, err error) {
	var want map[string]bool
	var tenants []string
	typ, _, _ := strings.Cut(object, ":")
	whole := typ == "ticket" && relation == authz.RelationCanView
	switch {
	case whole:
		// (shared or can_view from project) but not blocked: the shares'
		// users, each project's (taken apart as below), minus the blocked.
		want = map[string]bool{"viewer": true, "editor": true}
	case typ == "project" && relation == authz.RelationCanView:
		want = map[string]bool{"member": true, "owner": true, "viewer": true}
	case typ == "ticket" && relation == "shared":
		want = map[string]bool{"viewer": true, "editor": true}
	case typ == "ticket" && relation == "blocked":
		want = map[string]bool{"blocked": true}
	default:
		return nil, false, nil
	}
	var teams, projects []string
	blocked := false
	for t, err := range f.eng.Read(ctx, authz.TupleFilter{Object: object}) {
		if err != nil {
			return nil, false, unavailable("read direct tuples", err)
		}
		if whole && t.Relation == "project" {
			if t.Condition != nil || !strings.HasPrefix(t.User, "project:") || strings.ContainsAny(t.User, "#*") {
				return nil, false, nil
			}
			projects = append(projects, t.User)
			continue
		}
		if whole && t.Relation == "blocked" {
			blocked = true
			continue
		}
		if typ == "project" && t.Relation == "tenant" {
			if t.Condition != nil || !strings.HasPrefix(t.User, "tenant:") || strings.ContainsAny(t.User, "#*") {
				return nil, false, nil
			}
			tenants = append(tenants, t.User)
			continue
		}
		if !want[t.Relation] {
			continue
		}
		uType, rest, _ := strings.Cut(t.User, ":")
		id, rel, isSet := strings.Cut(rest, "#")
		switch {
		case t.Condition != nil || strings.Contains(id, "*"):
			return nil, false, nil // not a tuple clearance's model admits: the engine decides
		case uType == "user" && !isSet:
			users = append(users, t.User)
		case uType == "team" && isSet && rel == "member":
			teams = append(teams, "team:"+id)
		case uType == "service_account" && !isSet:
		default:
			return nil, false, nil
		}
	}
	parts := make([]usersOf, 0, len(teams)+len(tenants))
	for _, team := range teams {
		parts = append(parts, usersOf{team, "member"})
	}
	for _, ten := range tenants {
		parts = append(parts, usersOf{ten, "admin"})
	}
	for _, p := range projects {
		parts = append(parts, usersOf{p, authz.RelationCanView})
	}
	for _, part := range parts {
		more, err := f.listUsers(ctx, q, part.object, part.relation, "user")
		if err != nil {
			return nil, false, err
		}
		users = append(users, more...)
	}
	slices.Sort(users)
	users = slices.Compact(users)
	if blocked {
		minus, err := f.listUsers(ctx, q, object, "blocked", "user")
		if err != nil {
			return nil, false, err
		}
		users = slices.DeleteFunc(users, func(u string) bool {
			_, found := slices.BinarySearch(minus, u)
			return found
		})
	}
	return users, true, nil
}
