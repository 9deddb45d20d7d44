package filter

import (
	"context"
	"fmt"
	"slices"
	"strings"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"

	"github.com/clearance-dev/clearance/authz"
)

// ticketRule is ticket#can_view taken apart, when the model has the shape
//
//	can_view: (s1 or ... or r1 from t1 or ...) but not b
//
// where every s and b resolves to relations assigned directly on the ticket and
// every t is a directly assigned tupleset. Then a ticket's audience is
//
//	(audiences of r on each t-object ∪ audiences of s) − audience of b
//
// and many sources of a few projects need one big listing per project instead
// of one per ticket: the project's audience is shared, and s and b are listed
// only for tickets that have tuples of those relations (a Read tells). Every
// set is still the engine's answer; only the union and the difference are ours.
type ticketRule struct {
	shared  []string        // computed relations of the union (e.g. "shared")
	direct  map[string]bool // relations on the ticket whose tuples the shared relations read
	ttus    []ttu           // tupleset -> computed relation (e.g. project -> can_view)
	blocked string          // the subtracted relation ("" when none)
	bDirect map[string]bool // relations on the ticket the subtracted one reads
}

type ttu struct{ tupleset, computed string }

// parseTicketRule finds the rule in a model's DSL; nil when the model does not
// have that shape (then every source is listed whole).
func parseTicketRule(dsl string) *ticketRule {
	if dsl == "" {
		return nil
	}
	m, err := authz.ParseModel(dsl)
	if err != nil {
		return nil
	}
	return ticketRuleOf(m)
}

// ticketRuleOf finds the rule in a model; nil when it does not have that shape.
func ticketRuleOf(m *openfgav1.AuthorizationModel) *ticketRule {
	if m == nil {
		return nil
	}
	var rels map[string]*openfgav1.Userset
	for _, td := range m.GetTypeDefinitions() {
		if td.GetType() == "ticket" {
			rels = td.GetRelations()
		}
	}
	cv := rels[authz.RelationCanView]
	if cv == nil {
		return nil
	}
	r := &ticketRule{direct: map[string]bool{}, bDirect: map[string]bool{}}
	base := cv
	if d := cv.GetDifference(); d != nil {
		cu := d.GetSubtract().GetComputedUserset()
		if cu == nil || cu.GetObject() != "" || !directRelations(rels, cu.GetRelation(), r.bDirect, 0) {
			return nil
		}
		r.blocked = cu.GetRelation()
		base = d.GetBase()
	}
	children := []*openfgav1.Userset{base}
	if u := base.GetUnion(); u != nil {
		children = u.GetChild()
	}
	for _, c := range children {
		switch {
		case c.GetComputedUserset() != nil && c.GetComputedUserset().GetObject() == "":
			rel := c.GetComputedUserset().GetRelation()
			if !directRelations(rels, rel, r.direct, 0) {
				return nil
			}
			r.shared = append(r.shared, rel)
		case c.GetTupleToUserset() != nil:
			t := c.GetTupleToUserset()
			ts := t.GetTupleset().GetRelation()
			if !isThis(rels[ts]) || t.GetComputedUserset().GetObject() != "" {
				return nil
			}
			r.ttus = append(r.ttus, ttu{tupleset: ts, computed: t.GetComputedUserset().GetRelation()})
		default:
			return nil
		}
	}
	if len(r.ttus) == 0 {
		return nil // nothing to share between tickets
	}
	return r
}

// directRelations adds to out the directly assigned relations rel reads, and
// reports whether rel reads only those (this, or unions of relations that do).
func directRelations(rels map[string]*openfgav1.Userset, rel string, out map[string]bool, depth int) bool {
	us := rels[rel]
	switch {
	case us == nil || depth > 8:
		return false
	case isThis(us):
		out[rel] = true
		return true
	case us.GetUnion() != nil:
		for _, c := range us.GetUnion().GetChild() {
			cu := c.GetComputedUserset()
			if cu == nil || cu.GetObject() != "" || !directRelations(rels, cu.GetRelation(), out, depth+1) {
				return false
			}
		}
		return true
	}
	return false
}

// note adds one of a ticket's stored tuples to its plan.
func (r *ticketRule) note(p *sourcePlan, t authz.Tuple) {
	if r.direct[t.Relation] {
		p.shared = true
	}
	if r.bDirect[t.Relation] {
		p.blocked = true
	}
	for _, x := range r.ttus {
		if t.Relation == x.tupleset {
			p.targets = append(p.targets, t.User+"#"+x.computed)
		}
	}
}

// plan is how one source's audience is assembled.
type sourcePlan struct {
	targets []string // objects of the tuplesets, as "type:id#relation" listings
	shared  bool     // list the shared relations of the ticket
	blocked bool     // list the subtracted relation of the ticket
}

// sourceAudiences answers, for every source, who of the given types can view it
// now: one ListUsers per source (can_view), or with the rule, the tickets' own
// tuples read first and the listings of their projects shared.
func (f *Flow) sourceAudiences(ctx context.Context, sources []*source, types []string) ([][]string, string, error) {
	if f.rule == nil {
		jobs := make([]usersOf, len(sources))
		for i, s := range sources {
			jobs[i] = usersOf{"ticket:" + s.id, authz.RelationCanView}
		}
		return f.listAll(ctx, jobs, types)
	}
	r := f.rule
	var todo []*source
	for _, s := range sources {
		if !s.planned {
			todo = append(todo, s)
		}
	}
	err := f.parallel(ctx, len(todo), func(ctx context.Context, i int) error {
		p := &todo[i].plan
		for t, err := range f.eng.Read(ctx, authz.TupleFilter{Object: "ticket:" + todo[i].id}) {
			if err != nil {
				return unavailable("read source tuples", err)
			}
			r.note(p, t)
		}
		todo[i].planned = true
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	// One listing per distinct question.
	var jobs []usersOf
	index := map[usersOf]int{}
	ask := func(l usersOf) int {
		if i, ok := index[l]; ok {
			return i
		}
		index[l] = len(jobs)
		jobs = append(jobs, l)
		return len(jobs) - 1
	}
	type parts struct {
		base    []int
		blocked int
	}
	ps := make([]parts, len(sources))
	for i, s := range sources {
		p := s.plan
		ps[i].blocked = -1
		for _, t := range p.targets {
			obj, rel, _ := strings.Cut(t, "#")
			if strings.Contains(rel, "#") || !strings.Contains(obj, ":") {
				return nil, "", unavailable("read source tuples", fmt.Errorf("unexpected tupleset user %q on ticket %s", t, s.id))
			}
			ps[i].base = append(ps[i].base, ask(usersOf{obj, rel}))
		}
		if p.shared {
			for _, rel := range r.shared {
				ps[i].base = append(ps[i].base, ask(usersOf{"ticket:" + s.id, rel}))
			}
		}
		if p.blocked && r.blocked != "" {
			ps[i].blocked = ask(usersOf{"ticket:" + s.id, r.blocked})
		}
	}
	lists, cut, err := f.listAll(ctx, jobs, types)
	if err != nil || cut != "" {
		return nil, cut, err
	}
	out := make([][]string, len(sources))
	var whole []int // sources with a wildcard somewhere: listed whole instead
	for i := range sources {
		var base []string
		for _, j := range ps[i].base {
			base = append(base, lists[j]...)
		}
		var minus []string
		if ps[i].blocked >= 0 {
			minus = lists[ps[i].blocked]
		}
		if slices.ContainsFunc(base, isWildcard) || slices.ContainsFunc(minus, isWildcard) {
			whole = append(whole, i)
			continue
		}
		slices.Sort(base)
		base = slices.Compact(base)
		out[i] = slices.DeleteFunc(base, func(u string) bool {
			_, found := slices.BinarySearch(minus, u)
			return found
		})
	}
	if len(whole) > 0 {
		jobs := make([]usersOf, len(whole))
		for k, i := range whole {
			jobs[k] = usersOf{"ticket:" + sources[i].id, authz.RelationCanView}
		}
		lists, cut, err := f.listAll(ctx, jobs, types)
		if err != nil || cut != "" {
			return nil, cut, err
		}
		for k, i := range whole {
			out[i] = lists[k]
		}
	}
	return out, "", nil
}

func isWildcard(u string) bool { return strings.HasSuffix(u, ":*") }

// isThis: the relation is assigned directly. (The DSL transformer sets the
// oneof with a nil message, so GetThis is nil even then.)
func isThis(us *openfgav1.Userset) bool {
	_, ok := us.GetUserset().(*openfgav1.Userset_This)
	return ok
}
