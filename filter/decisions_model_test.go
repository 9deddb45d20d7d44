package filter

import (
	"slices"
	"strings"
	"testing"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"

	"github.com/clearance-dev/clearance/authz"
)

// conditioned is where a relation's evaluation reaches a tuple that may carry a
// condition: the relation holding it and whether it is reached under an
// exclusion ("but not", negative).
type conditioned struct {
	object, relation, condition string
	negative                    bool
}

// reachConditions walks typ#rel's rewrite through computed relations, tuple to
// userset and usersets of other types, and reports every conditioned type
// restriction reached, with its polarity.
func reachConditions(m *openfgav1.AuthorizationModel, typ, rel string) []conditioned {
	types := map[string]*openfgav1.TypeDefinition{}
	for _, td := range m.GetTypeDefinitions() {
		types[td.GetType()] = td
	}
	var out []conditioned
	seen := map[string]bool{}
	var visit func(typ, rel string, neg bool)
	var rewrite func(typ, rel string, us *openfgav1.Userset, neg bool)
	visit = func(typ, rel string, neg bool) {
		key := typ + "#" + rel + map[bool]string{true: "-", false: "+"}[neg]
		if seen[key] || types[typ] == nil || types[typ].GetRelations()[rel] == nil {
			return
		}
		seen[key] = true
		rewrite(typ, rel, types[typ].GetRelations()[rel], neg)
	}
	rewrite = func(typ, rel string, us *openfgav1.Userset, neg bool) {
		switch u := us.GetUserset().(type) {
		case *openfgav1.Userset_This:
			for _, d := range types[typ].GetMetadata().GetRelations()[rel].GetDirectlyRelatedUserTypes() {
				if c := d.GetCondition(); c != "" {
					out = append(out, conditioned{typ, rel, c, neg})
				}
				if r := d.GetRelation(); r != "" {
					visit(d.GetType(), r, neg)
				}
			}
		case *openfgav1.Userset_ComputedUserset:
			visit(typ, u.ComputedUserset.GetRelation(), neg)
		case *openfgav1.Userset_TupleToUserset:
			ts := u.TupleToUserset.GetTupleset().GetRelation()
			visit(typ, ts, neg)
			for _, d := range types[typ].GetMetadata().GetRelations()[ts].GetDirectlyRelatedUserTypes() {
				visit(d.GetType(), u.TupleToUserset.GetComputedUserset().GetRelation(), neg)
			}
		case *openfgav1.Userset_Union:
			for _, c := range u.Union.GetChild() {
				rewrite(typ, rel, c, neg)
			}
		case *openfgav1.Userset_Intersection:
			for _, c := range u.Intersection.GetChild() {
				rewrite(typ, rel, c, neg)
			}
		case *openfgav1.Userset_Difference:
			rewrite(typ, rel, u.Difference.GetBase(), neg)
			rewrite(typ, rel, u.Difference.GetSubtract(), !neg)
		}
	}
	visit(typ, rel, false)
	return out
}

// TestModelConditions checks the facts about authz/model.fga that the decision
// cache's time bounds rest on (decisionBounds, docs/decisions/decision-cache.md).
// A model change that breaks one fails here, before the cache can serve an
// answer the new model would not give.
func TestModelConditions(t *testing.T) {
	m, err := authz.Model()
	if err != nil {
		t.Fatal(err)
	}
	// 1. The only conditioned tuples are project#granted from a delegation,
	// under not_expired.
	for _, td := range m.GetTypeDefinitions() {
		for rel, md := range td.GetMetadata().GetRelations() {
			for _, d := range md.GetDirectlyRelatedUserTypes() {
				if d.GetCondition() == "" {
					continue
				}
				if td.GetType() != "project" || rel != "granted" || d.GetType() != "delegation" || d.GetCondition() != "not_expired" {
					t.Errorf("conditioned tuple %s#%s@%s with %s: the decision cache's bounds do not cover it", td.GetType(), rel, d.GetType(), d.GetCondition())
				}
			}
		}
	}
	// 2. not_expired is true before expires_at and false from then on: it only
	// ever turns from true to false as current_time grows.
	c := m.GetConditions()["not_expired"]
	if expr := strings.Join(strings.Fields(c.GetExpression()), " "); expr != "current_time < expires_at" {
		t.Errorf("not_expired is %q: the bound assumes current_time < expires_at", expr)
	}
	if c.GetParameters()["current_time"].GetTypeName() != openfgav1.ConditionParamTypeRef_TYPE_NAME_TIMESTAMP ||
		c.GetParameters()["expires_at"].GetTypeName() != openfgav1.ConditionParamTypeRef_TYPE_NAME_TIMESTAMP {
		t.Errorf("not_expired parameters: %v", c.GetParameters())
	}
	// 3. can_view (users and service accounts) reaches no conditioned tuple: its
	// answers do not depend on the time.
	if got := reachConditions(m, "ticket", authz.RelationCanView); len(got) != 0 {
		t.Errorf("ticket#can_view reaches conditioned tuples: %+v", got)
	}
	// 4. agent_can_view reaches only project#granted, never under an exclusion:
	// it can only turn from allowed to denied as time passes.
	want := []conditioned{{"project", "granted", "not_expired", false}}
	if got := reachConditions(m, "ticket", authz.RelationAgentCanView); !slices.Equal(slices.Compact(got), want) {
		t.Errorf("ticket#agent_can_view reaches %+v, want %+v", got, want)
	}
	// 5. No relation reads another object's ticket tuples: ticket is no
	// relation's user type (directly, as a userset, or through a tupleset,
	// whose targets are its relation's user types). So a change to ticket:X can
	// alter decisions on ticket:X only (the cache's targeted invalidation).
	for _, td := range m.GetTypeDefinitions() {
		for rel, md := range td.GetMetadata().GetRelations() {
			for _, d := range md.GetDirectlyRelatedUserTypes() {
				if d.GetType() == "ticket" {
					t.Errorf("%s#%s admits ticket as its user: a ticket change could alter other objects' decisions", td.GetType(), rel)
				}
			}
		}
	}
	// 6. The delegation a grant counts for is the agent's own: activated needs
	// the active tuple, which is only ever contextual (stored ones are refused,
	// authz/internal/fga), and the planner adds it for (user, agent) only.
	act := relations(m, "delegation")["activated"].GetIntersection().GetChild()
	if len(act) != 2 || act[0].GetComputedUserset().GetRelation() != "active" || act[1].GetComputedUserset().GetRelation() != "delegator" {
		t.Errorf("delegation#activated is not `active and delegator`: %v", act)
	}
}

func relations(m *openfgav1.AuthorizationModel, typ string) map[string]*openfgav1.Userset {
	for _, td := range m.GetTypeDefinitions() {
		if td.GetType() == typ {
			return td.GetRelations()
		}
	}
	return nil
}
