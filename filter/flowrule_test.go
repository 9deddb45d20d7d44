package filter

import (
	"slices"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/authz"
)

// TestTicketRuleFromModel: clearance's model decomposes as the flow check
// expects; a model whose ticket#can_view has another shape does not, and the
// check then lists every source whole.
func TestTicketRuleFromModel(t *testing.T) {
	r := parseTicketRule(authz.ModelDSL)
	if r == nil {
		t.Fatal("clearance's model does not decompose")
	}
	m, err := authz.Model()
	if err != nil {
		t.Fatal(err)
	}
	if ticketRuleOf(m) == nil || ticketRuleOf(nil) != nil {
		t.Error("ticketRuleOf disagrees with parseTicketRule")
	}
	if !slices.Equal(r.shared, []string{"shared"}) || r.blocked != "blocked" || len(r.ttus) != 1 || r.ttus[0] != (ttu{"project", "can_view"}) ||
		!r.direct["viewer"] || !r.direct["editor"] || !r.bDirect["blocked"] {
		t.Errorf("rule %+v", r)
	}
	for name, change := range map[string][2]string{
		"intersection":     {"define can_view: (shared or can_view from project) but not blocked", "define can_view: (shared or can_view from project) and viewer"},
		"computed blocked": {"    define blocked: [user, team#member, service_account]\n", "    define blocked: [user, team#member, service_account] or editor_blocked\n    define editor_blocked: editor from project\n"},
		"no project":       {"define can_view: (shared or can_view from project) but not blocked", "define can_view: shared but not blocked"},
	} {
		dsl := strings.Replace(authz.ModelDSL, change[0], change[1], 1)
		if dsl == authz.ModelDSL {
			t.Fatalf("%s: the change does not apply", name)
		}
		if _, err := authz.ParseModel(dsl); err != nil {
			t.Logf("%s: model does not parse (%v): the rule is nil anyway", name, err)
		}
		if r := parseTicketRule(dsl); r != nil {
			t.Errorf("%s: decomposed as %+v", name, r)
		}
	}
}
