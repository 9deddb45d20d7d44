package api

import (
	"context"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	openfgav1 "github.com/openfga/api/proto/openfga/v1"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
)

// flowEnv is the real server with /v1/search, /v1/flow/check and /mcp over the
// demo org (embedded engine, embedded store), where anne is also a member of
// acme-secret and has granted her copilot acme-secret: the seed's scenario.
type flowEnv struct {
	*fixture
	base string
	log  *filter.MemoryLog
}

var flowTokens = staticAuth{
	"anne":    {Kind: authz.KindUser, Tenant: "acme", User: "anne", Scopes: []string{ScopeTicketsRead}},
	"copilot": {Kind: authz.KindAgent, Tenant: "acme", User: "anne", Agent: "copilot", Scopes: []string{ScopeTicketsRead}},
	"bob":     {Kind: authz.KindUser, Tenant: "acme", User: "bob", Scopes: []string{ScopeTicketsRead}},
	"olga":    {Kind: authz.KindUser, Tenant: "acme", User: "olga", Scopes: []string{ScopeTicketsRead, ScopeAudit}},
	"indexer": {Kind: authz.KindUser, Tenant: "acme", User: "ci", Scopes: []string{ScopeIndex}},
}

func newFlowEnv(t *testing.T) *flowEnv {
	t.Helper()
	f := newFixture(t)
	if err := f.engine.Write(context.Background(), []authz.Tuple{
		{User: "user:anne", Relation: "member", Object: "project:acme-secret"},
		{User: "delegation:anne~copilot", Relation: "granted", Object: "project:acme-secret"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	log := &filter.MemoryLog{}
	planner := filter.New(filter.Config{}, f.engine, f.store, retrieval.NewHashing(retrieval.HashingConfig{Dim: 256}), log)
	// The model the engine evaluates, as serve passes it.
	model := f.engine.(interface {
		Model() *openfgav1.AuthorizationModel
	}).Model()
	flow := filter.NewFlow(filter.FlowConfig{Model: model}, f.engine.(filter.FlowEngine), log, log)
	srv := New(Config{}, Deps{Auth: flowTokens, Areas: []Area{&SearchAPI{Planner: planner}, &FlowAPI{Flow: flow}}})
	(&MCP{Planner: planner, Flow: flow, Version: "test"}).Mount(srv)
	return &flowEnv{fixture: f, base: serveHandler(t, srv.Handler()), log: log}
}

// secretSearch is the copilot's search of acme-secret; it answers the audit id
// and the tickets returned.
func (e *flowEnv) secretSearch(t *testing.T, who string) (string, []string) {
	t.Helper()
	a := do(t, "POST", e.base+"/v1/search", who, map[string]any{"query": "security vulnerability report", "top_k": 5, "filters": map[string]any{"projects": []string{"acme-secret"}}})
	if a.code != 200 {
		t.Fatalf("search as %s: %d %s", who, a.code, a.raw)
	}
	var ids []string
	for _, r := range a.body["results"].([]any) {
		ids = append(ids, r.(map[string]any)["ticket_id"].(string))
	}
	if len(ids) == 0 {
		t.Fatalf("%s found nothing in acme-secret", who)
	}
	return a.body["audit_id"].(string), ids
}

func reasonsOf(a answer) string {
	var out []string
	for _, r := range a.body["reasons"].([]any) {
		out = append(out, r.(string))
	}
	return strings.Join(out, " | ")
}

// TestFlowCheckSeedScenario: the copilot read SEC tickets; writing a summary
// into acme-docs is denied with counts and the SEC ids it was given, writing
// into acme-secret is allowed; both are flow_check records linking the search.
func TestFlowCheckSeedScenario(t *testing.T) {
	e := newFlowEnv(t)
	id, got := e.secretSearch(t, "copilot")
	check := func(dest map[string]any) answer {
		t.Helper()
		a := do(t, "POST", e.base+"/v1/flow/check", "copilot", map[string]any{"sources": map[string]any{"audit_ids": []string{id}}, "destination": dest})
		if a.code != 200 {
			t.Fatalf("flow check to %v: %d %s", dest, a.code, a.raw)
		}
		return a
	}
	docs := check(map[string]any{"project": "acme-docs"})
	if docs.body["allowed"] != false {
		t.Fatalf("summary of SEC tickets into acme-docs allowed: %s", docs.raw)
	}
	r := reasonsOf(docs)
	// acme-docs: frank (member), bob (tenant admin), acme-ingest (viewer): frank
	// and acme-ingest cannot view every SEC ticket (frank sees only SEC-1).
	if !strings.Contains(r, "of the 3 principals who can view project acme-docs cannot view") || !strings.Contains(r, got[0]) {
		t.Errorf("reasons %q: want counts over the 3 principals of acme-docs and the SEC ids", r)
	}
	if strings.Contains(r, "frank") || strings.Contains(r, "acme-ingest") {
		t.Errorf("reasons name principals without explain: %q", r)
	}
	t.Logf("acme-docs: %s", docs.raw)
	sec := check(map[string]any{"project": "acme-secret"})
	if sec.body["allowed"] != true {
		t.Fatalf("summary of SEC tickets into acme-secret denied: %s", sec.raw)
	}
	for _, a := range []answer{docs, sec} {
		rec, ok := e.log.Record(a.body["audit_id"].(string))
		if !ok || rec.Kind != filter.KindFlowCheck || rec.Flow == nil || len(rec.Flow.SourceAuditIDs) != 1 || rec.Flow.SourceAuditIDs[0] != id {
			t.Fatalf("no flow_check record linking %s: %+v", id, rec)
		}
		sources := 0
		for _, c := range rec.Results {
			if c.Decision == audit.FlowSource {
				sources++
			}
		}
		if sources != len(got) || rec.Flow.Allowed != a.body["allowed"] {
			t.Errorf("record %s: %d source candidates for %d tickets, allowed %v", rec.ID, sources, len(got), rec.Flow.Allowed)
		}
	}
	// Tickets the copilot may view work as sources too; one it may not is
	// unknown, like a missing one.
	a := do(t, "POST", e.base+"/v1/flow/check", "copilot", map[string]any{"sources": map[string]any{"ticket_ids": []string{"HR-1"}}, "destination": map[string]any{"project": "acme-secret"}})
	b := do(t, "POST", e.base+"/v1/flow/check", "copilot", map[string]any{"sources": map[string]any{"ticket_ids": []string{"NOPE-1"}}, "destination": map[string]any{"project": "acme-secret"}})
	if a.body["allowed"] != false || strings.ReplaceAll(reasonsOf(a), "HR-1", "X") != strings.ReplaceAll(reasonsOf(b), "NOPE-1", "X") {
		t.Errorf("invisible ticket %q vs missing ticket %q: want the same denial", a.raw, b.raw)
	}
}

// TestFlowCheckPrincipals: anne cannot cite her copilot's answer; explain is
// for tenant admins and operators only; recipients are a destination.
func TestFlowCheckPrincipals(t *testing.T) {
	e := newFlowEnv(t)
	id, _ := e.secretSearch(t, "copilot")
	body := func(explain bool) map[string]any {
		return map[string]any{"sources": map[string]any{"audit_ids": []string{id}}, "destination": map[string]any{"project": "acme-docs"}, "explain": explain}
	}
	if a := do(t, "POST", e.base+"/v1/flow/check", "anne", body(false)); a.code != 200 || a.body["allowed"] != false || !strings.Contains(reasonsOf(a), "is unknown") {
		t.Errorf("anne citing the copilot's record: %d %s", a.code, a.raw)
	}
	if a := do(t, "POST", e.base+"/v1/flow/check", "copilot", body(true)); a.code != 403 {
		t.Errorf("explain by an agent: %d %s, want 403", a.code, a.raw)
	}
	// bob (tenant admin) and olga (operator) may have the names, but they
	// cannot cite the copilot's record either: they cite tickets.
	for _, who := range []string{"bob", "olga"} {
		a := do(t, "POST", e.base+"/v1/flow/check?explain=true", who, map[string]any{
			"sources": map[string]any{"ticket_ids": []string{"SEC-2"}}, "destination": map[string]any{"project": "acme-docs"}})
		if who == "olga" {
			// The operator is not an acme user who may view SEC-2.
			if a.code != 200 || !strings.Contains(reasonsOf(a), "is unknown") {
				t.Errorf("olga: %d %s", a.code, a.raw)
			}
			continue
		}
		if a.code != 200 || a.body["allowed"] != false || !strings.Contains(a.raw, `"principal":"user:frank"`) || !strings.Contains(a.raw, `"principal":"service_account:acme-ingest"`) {
			t.Errorf("explained answer for %s: %d %s", who, a.code, a.raw)
		}
	}
	// Recipients: dave can view SEC-2 (owner of acme-secret), frank cannot.
	for _, tc := range []struct {
		to    []string
		allow bool
	}{{[]string{"user:dave"}, true}, {[]string{"user:dave", "user:frank"}, false}, {[]string{"user:auth0|x@y.z"}, false}} {
		a := do(t, "POST", e.base+"/v1/flow/check", "bob", map[string]any{"sources": map[string]any{"ticket_ids": []string{"SEC-2"}}, "destination": map[string]any{"principals": tc.to}})
		if a.code != 200 || a.body["allowed"] != tc.allow {
			t.Errorf("to %v: %d %s, want allowed %v", tc.to, a.code, a.raw, tc.allow)
		}
	}
}

// TestFlowCheckInput: strict decoding and validation, problem+json naming the
// field, and the scope.
func TestFlowCheckInput(t *testing.T) {
	e := newFlowEnv(t)
	src := map[string]any{"ticket_ids": []string{"WEB-1"}}
	for _, tc := range []struct {
		name  string
		body  any
		field string
	}{
		{"unknown field", map[string]any{"sources": src, "destination": map[string]any{"project": "acme-web"}, "extra": 1}, "extra"},
		{"no sources", map[string]any{"destination": map[string]any{"project": "acme-web"}}, "sources"},
		{"empty sources", map[string]any{"sources": map[string]any{}, "destination": map[string]any{"project": "acme-web"}}, "sources"},
		{"no destination", map[string]any{"sources": src}, "destination"},
		{"two destinations", map[string]any{"sources": src, "destination": map[string]any{"project": "acme-web", "ticket": "WEB-1"}}, "destination"},
		{"bad principal", map[string]any{"sources": src, "destination": map[string]any{"principals": []string{"team:x#member"}}}, "destination.principals[0]"},
		{"bad project", map[string]any{"sources": src, "destination": map[string]any{"project": "../x"}}, "destination.project"},
		{"bad audit id", map[string]any{"sources": map[string]any{"audit_ids": []string{"not-an-id"}}, "destination": map[string]any{"project": "acme-web"}}, "sources.audit_ids[0]"},
		{"bad ticket id", map[string]any{"sources": map[string]any{"ticket_ids": []string{"WEB-1", "a b"}}, "destination": map[string]any{"project": "acme-web"}}, "sources.ticket_ids[1]"},
		{"wrong type", map[string]any{"sources": map[string]any{"ticket_ids": "WEB-1"}, "destination": map[string]any{"project": "acme-web"}}, "sources.ticket_ids"},
	} {
		a := do(t, "POST", e.base+"/v1/flow/check", "anne", tc.body)
		if a.code != 400 || a.field() != tc.field {
			t.Errorf("%s: %d field %q (%s), want 400 field %q", tc.name, a.code, a.field(), a.raw, tc.field)
		}
	}
	if a := do(t, "POST", e.base+"/v1/flow/check?verbose=1", "anne", map[string]any{"sources": src, "destination": map[string]any{"project": "acme-web"}}); a.code != 400 {
		t.Errorf("unknown query parameter: %d", a.code)
	}
	if a := do(t, "POST", e.base+"/v1/flow/check", "indexer", map[string]any{"sources": src, "destination": map[string]any{"project": "acme-web"}}); a.code != 403 {
		t.Errorf("without tickets:read: %d, want 403", a.code)
	}
	if n := len(e.log.Records()); n != 0 {
		t.Errorf("refused input left %d audit records", n)
	}
}

// TestCheckWriteTool: the MCP tool answers like the endpoint, for the caller
// of the HTTP request only, and its description tells the model what to do.
func TestCheckWriteTool(t *testing.T) {
	e := newFlowEnv(t)
	id, _ := e.secretSearch(t, "copilot")
	s, err := connectTo(t, e.base, header{name: "Authorization", value: "Bearer copilot"})
	if err != nil {
		t.Fatal(err)
	}
	tools, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	desc := ""
	for _, tl := range tools.Tools {
		if tl.Name == "check_write" {
			desc = tl.Description
		}
	}
	for _, want := range []string{"BEFORE writing", "search_tickets", "do NOT write there", "ask how to proceed"} {
		if !strings.Contains(desc, want) {
			t.Errorf("check_write description lacks %q: %q", want, desc)
		}
	}
	var out filter.FlowResponse
	res := callTool(t, s, "check_write", map[string]any{"audit_ids": []string{id}, "project": "acme-docs"}, &out)
	if res.IsError || out.Allowed || out.AuditID == "" {
		t.Fatalf("check_write into acme-docs: %+v %+v", res, out)
	}
	if tc, ok := res.Content[0].(*mcp.TextContent); !ok || !strings.HasPrefix(tc.Text, "DENIED") {
		t.Errorf("check_write text: %#v", res.Content[0])
	}
	res = callTool(t, s, "check_write", map[string]any{"audit_ids": []string{id}, "project": "acme-secret"}, &out)
	if res.IsError || !out.Allowed {
		t.Fatalf("check_write into acme-secret: %+v %+v", res, out)
	}
	res = callTool(t, s, "check_write", map[string]any{"audit_ids": []string{id}}, nil)
	if !res.IsError {
		t.Errorf("check_write without a destination: not an error")
	}
}

// TestAuditPageShowsFlowCheck: a flow_check record shows its decision, its
// destination, its counts, links to its source records and its source tickets
// on the /audit page.
func TestAuditPageShowsFlowCheck(t *testing.T) {
	f := newAuditFixture(t)
	fl := filter.NewFlow(filter.FlowConfig{}, f.engine, f.log, f.log)
	resp, err := fl.Check(context.Background(), user("acme", "alice", ScopeTicketsRead), filter.FlowRequest{
		Sources:     filter.FlowSources{TicketIDs: []string{"T-acme-0", "T-acme-1"}},
		Destination: filter.FlowDestination{Principals: []string{"user:bob"}},
	})
	if err != nil || resp.Allowed {
		t.Fatalf("alice's tickets to bob: %+v %v, want a denial", resp, err)
	}
	tokens := staticAuth{"op-token": user("ops", "olga", ScopeAudit, ScopeTicketsRead)}
	page, err := NewAuditPage(AuditPageConfig{Reader: &AuditReader{Log: f.log, Engine: f.engine}, Authenticate: tokens.Authenticate})
	if err != nil {
		t.Fatal(err)
	}
	base := serveHandler(t, New(Config{}, Deps{Auth: tokens, Pages: []Page{page}}).Handler())
	c := newClient(t)
	signIn(t, c, base, "op-token")
	r, body := get(t, c, base+"/audit/records/"+resp.AuditID)
	if r.StatusCode != 200 {
		t.Fatalf("record page: %d", r.StatusCode)
	}
	for _, want := range []string{"flow_check", "Flow check", "denied", "<code>principals</code> (1 recipients)", "1 / 1", "T-acme-0", "T-acme-1", "a source of the flow check"} {
		if !strings.Contains(body, want) {
			t.Errorf("flow record page lacks %q", want)
		}
	}
	if strings.Contains(body, `id="withheld"`) {
		t.Error("a flow record shows a withheld table")
	}
}
