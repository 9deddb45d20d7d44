package filter

import (
	"slices"
	"testing"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"

	"github.com/clearance-dev/clearance/authz"
)

// reachServiceAccount walks typ#rel's rewrite (computed relations, tuple to
// userset, usersets of other types, both sides of exclusions and
// intersections) and reports every relation whose direct type restrictions
// admit a service account ("type#relation", plus " wildcard" or " condition"
// when the restriction is public or conditioned).
func reachServiceAccount(m *openfgav1.AuthorizationModel, typ, rel string) []string {
	types := map[string]*openfgav1.TypeDefinition{}
	for _, td := range m.GetTypeDefinitions() {
		types[td.GetType()] = td
	}
	var out []string
	seen := map[string]bool{}
	var visit func(typ, rel string)
	var rewrite func(typ, rel string, us *openfgav1.Userset)
	visit = func(typ, rel string) {
		if seen[typ+"#"+rel] || types[typ] == nil || types[typ].GetRelations()[rel] == nil {
			return
		}
		seen[typ+"#"+rel] = true
		rewrite(typ, rel, types[typ].GetRelations()[rel])
	}
	rewrite = func(typ, rel string, us *openfgav1.Userset) {
		switch u := us.GetUserset().(type) {
		case *openfgav1.Userset_This:
			for _, d := range types[typ].GetMetadata().GetRelations()[rel].GetDirectlyRelatedUserTypes() {
				if r := d.GetRelation(); r != "" {
					visit(d.GetType(), r)
					continue
				}
				if d.GetType() != "service_account" {
					continue
				}
				s := typ + "#" + rel
				if d.GetWildcard() != nil {
					s += " wildcard"
				}
				if d.GetCondition() != "" {
					s += " condition"
				}
				out = append(out, s)
			}
		case *openfgav1.Userset_ComputedUserset:
			visit(typ, u.ComputedUserset.GetRelation())
		case *openfgav1.Userset_TupleToUserset:
			ts := u.TupleToUserset.GetTupleset().GetRelation()
			for _, d := range types[typ].GetMetadata().GetRelations()[ts].GetDirectlyRelatedUserTypes() {
				visit(d.GetType(), u.TupleToUserset.GetComputedUserset().GetRelation())
			}
		case *openfgav1.Userset_Union:
			for _, c := range u.Union.GetChild() {
				rewrite(typ, rel, c)
			}
		case *openfgav1.Userset_Intersection:
			for _, c := range u.Intersection.GetChild() {
				rewrite(typ, rel, c)
			}
		case *openfgav1.Userset_Difference:
			rewrite(typ, rel, u.Difference.GetBase())
			rewrite(typ, rel, u.Difference.GetSubtract())
		}
	}
	visit(typ, rel)
	slices.Sort(out)
	return slices.Compact(out)
}

// TestModelServiceAccountPaths checks the facts about authz/model.fga that
// directSA and directUsers (flowsa.go) rest on: a service account reaches project#can_view,
// ticket#shared and ticket#blocked only through the direct tuples directSA
// reads (no userset of any type admits one, no wildcard, no condition), and
// ticket#can_view is exactly (shared or can_view from project) but not
// blocked, with project = [project]; a ticket's shares and blocks are direct
// [user, team#member, service_account] tuples. A model change that breaks one
// fails here.
func TestModelServiceAccountPaths(t *testing.T) {
	m, err := authz.Model()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		typ, rel string
		want     []string
	}{
		{"project", authz.RelationCanView, []string{"project#member", "project#viewer"}},
		{"ticket", "shared", []string{"ticket#editor", "ticket#viewer"}},
		{"ticket", "blocked", []string{"ticket#blocked"}},
		// Usersets the model admits hold no service account.
		{"team", "member", nil},
		{"tenant", "admin", nil},
		{"project", "owner", nil},
	} {
		if got := reachServiceAccount(m, c.typ, c.rel); !slices.Equal(got, c.want) {
			t.Errorf("%s#%s reaches service accounts through %q, directSA reads %q", c.typ, c.rel, got, c.want)
		}
	}
	// The directly assigned relations directSA reads take nothing but the
	// service account itself from that type.
	r := ticketRuleOf(m)
	if r == nil || !slices.Equal(r.shared, []string{"shared"}) || r.blocked != "blocked" ||
		!slices.Equal(r.ttus, []ttu{{tupleset: "project", computed: authz.RelationCanView}}) {
		t.Fatalf("ticket#can_view is not (shared or can_view from project) but not blocked: %+v", r)
	}
	// directUsers of a project: can_view = member or viewer or admin from
	// tenant, member = [...] or owner, every part directly assigned.
	rels := relationsOf(m, "project")
	cv := rels[authz.RelationCanView].GetUnion().GetChild()
	if len(cv) != 3 || cv[0].GetComputedUserset().GetRelation() != "member" || cv[1].GetComputedUserset().GetRelation() != "viewer" ||
		cv[2].GetTupleToUserset().GetTupleset().GetRelation() != "tenant" || cv[2].GetTupleToUserset().GetComputedUserset().GetRelation() != "admin" {
		t.Errorf("project#can_view is not member or viewer or admin from tenant: %v", rels[authz.RelationCanView])
	}
	mem := rels["member"].GetUnion().GetChild()
	if len(mem) != 2 || !isThis(mem[0]) || mem[1].GetComputedUserset().GetRelation() != "owner" {
		t.Errorf("project#member is not [...] or owner: %v", rels["member"])
	}
	for rel, want := range map[string][]string{
		"member": {"service_account", "team#member", "user"},
		"owner":  {"team#member", "user"},
		"viewer": {"service_account", "team#member", "user"},
		"tenant": {"tenant"},
	} {
		if rel != "member" && !isThis(rels[rel]) {
			t.Errorf("project#%s is not directly assigned", rel)
		}
		if got := directTypes(m, "project", rel); !slices.Equal(got, want) {
			t.Errorf("project#%s admits %q, directUsers reads %q", rel, got, want)
		}
	}
	for _, td := range m.GetTypeDefinitions() {
		if td.GetType() != "ticket" {
			continue
		}
		// directUsers: shares and blocks take users, team members and
		// service accounts, nothing public or conditioned.
		for _, rel := range []string{"viewer", "editor", "blocked"} {
			if !isThis(td.GetRelations()[rel]) {
				t.Errorf("ticket#%s is not directly assigned", rel)
			}
			if got, want := directTypes(m, "ticket", rel), []string{"service_account", "team#member", "user"}; !slices.Equal(got, want) {
				t.Errorf("ticket#%s admits %q, directUsers reads %q", rel, got, want)
			}
		}
		if u := td.GetRelations()["shared"].GetUnion().GetChild(); len(u) != 2 || u[0].GetComputedUserset().GetRelation() != "viewer" || u[1].GetComputedUserset().GetRelation() != "editor" {
			t.Errorf("ticket#shared is not viewer or editor: %v", td.GetRelations()["shared"])
		}
		var ts []string
		for _, d := range td.GetMetadata().GetRelations()["project"].GetDirectlyRelatedUserTypes() {
			ts = append(ts, d.GetType()+d.GetRelation()+d.GetCondition())
			if d.GetWildcard() != nil {
				ts = append(ts, "wildcard")
			}
		}
		if !slices.Equal(ts, []string{"project"}) {
			t.Errorf("ticket#project admits %q, directSA reads project objects only", ts)
		}
	}
}

func relationsOf(m *openfgav1.AuthorizationModel, typ string) map[string]*openfgav1.Userset {
	for _, td := range m.GetTypeDefinitions() {
		if td.GetType() == typ {
			return td.GetRelations()
		}
	}
	return nil
}

// directTypes lists typ#rel's direct type restrictions, sorted ("team#member";
// a public or conditioned one is marked).
func directTypes(m *openfgav1.AuthorizationModel, typ, rel string) []string {
	var out []string
	for _, td := range m.GetTypeDefinitions() {
		if td.GetType() != typ {
			continue
		}
		for _, d := range td.GetMetadata().GetRelations()[rel].GetDirectlyRelatedUserTypes() {
			s := d.GetType()
			if d.GetRelation() != "" {
				s += "#" + d.GetRelation()
			}
			if d.GetWildcard() != nil || d.GetCondition() != "" {
				s += " public or conditioned"
			}
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}
