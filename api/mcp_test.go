package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
)

// mcpAudience is the test server's resource URL: tokens must carry it in aud.
const mcpAudience = "https://clearance.test"

// mcpEnv is the real server with /v1/search and /mcp over the same planner
// (real embedded engine and store with the demo org), authenticating real dev
// JWTs with the api/auth verifier.
type mcpEnv struct {
	*fixture
	base   string
	dev    *auth.DevKey
	log    *filter.MemoryLog
	engine *faultyEngine
	store  *faultyStore
}

func newMCPEnv(t *testing.T) *mcpEnv {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t)
	log := &filter.MemoryLog{}
	eng, st := &faultyEngine{Engine: f.engine}, &faultyStore{Store: f.store}
	planner := filter.New(filter.Config{}, eng, st, retrieval.NewHashing(retrieval.HashingConfig{Dim: 256}), log)
	dev, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set, err := dev.PublicSet()
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewJWTVerifier(ctx, auth.JWTConfig{Issuer: auth.DevIssuer, Audiences: []string{mcpAudience}, Keys: set, AuthMethod: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{PublicURL: mcpAudience}, Deps{
		Auth:  &auth.Authenticator{Verifiers: []*auth.JWTVerifier{v}},
		Areas: []Area{&SearchAPI{Planner: planner}},
	})
	(&MCP{Planner: planner, Version: "test"}).Mount(srv)
	return &mcpEnv{fixture: f, base: serveHandler(t, srv.Handler()), dev: dev, log: log, engine: eng, store: st}
}

// token mints a dev token; who is "user" or "user+agent" as in searchPrincipals.
func (e *mcpEnv) token(t testing.TB, who, tenant, audience string, scopes ...string) string {
	t.Helper()
	user, agent, _ := strings.Cut(who, "+")
	tok, err := e.dev.Mint(auth.TokenRequest{Subject: user, Tenant: tenant, Actor: agent, Scopes: scopes, Audience: audience, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *mcpEnv) readToken(t testing.TB, who, tenant string) string {
	return e.token(t, who, tenant, mcpAudience, ScopeTicketsRead)
}

// header adds one header to every request of the SDK's client (none when
// value is empty).
type header struct{ name, value string }

func (h header) RoundTrip(r *http.Request) (*http.Response, error) {
	if h.value != "" {
		r = r.Clone(r.Context())
		r.Header.Set(h.name, h.value)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// connectTo opens an MCP session with the SDK's own client over real HTTP.
func connectTo(t *testing.T, base string, h header) (*mcp.ClientSession, error) {
	t.Helper()
	hc := &http.Client{Transport: h, Timeout: 30 * time.Second}
	c := mcp.NewClient(&mcp.Implementation{Name: "mcp-test", Version: "1"}, nil)
	s, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: base + MCPPath, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func (e *mcpEnv) connect(t *testing.T, token string) (*mcp.ClientSession, error) {
	t.Helper()
	h := header{name: "Authorization"}
	if token != "" {
		h.value = "Bearer " + token
	}
	return connectTo(t, e.base, h)
}

func (e *mcpEnv) session(t *testing.T, token string) *mcp.ClientSession {
	t.Helper()
	s, err := e.connect(t, token)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return s
}

// callTool runs a tool and decodes its structured output into out; it returns the
// result (IsError and text for tool errors).
func callTool(t *testing.T, s *mcp.ClientSession, tool string, args map[string]any, out any) *mcp.CallToolResult {
	t.Helper()
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	if res.IsError || out == nil {
		return res
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s: structured content %s: %v", tool, raw, err)
	}
	return res
}

func text(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func mcpSearch(t *testing.T, s *mcp.ClientSession, args map[string]any) searchAnswer {
	t.Helper()
	var r searchAnswer
	res := callTool(t, s, "search_tickets", args, &r)
	if res.IsError {
		t.Fatalf("search_tickets %v: tool error %q", args, text(res))
	}
	if r.AuditID == "" || r.Status == "" || r.Exact == nil {
		t.Fatalf("search_tickets %v: no audit id, status or exact: %+v", args, r)
	}
	return r
}

func (e *mcpEnv) httpSearch(t *testing.T, token string, body map[string]any) searchAnswer {
	t.Helper()
	a := do(t, "POST", e.base+"/v1/search", token, body)
	if a.code != 200 {
		t.Fatalf("/v1/search: %d %s", a.code, a.raw)
	}
	var r searchAnswer
	if err := json.Unmarshal([]byte(a.raw), &r); err != nil {
		t.Fatal(err)
	}
	// The embedded store is exact: /v1/search says so.
	if r.Exact == nil || !*r.Exact {
		t.Fatalf("/v1/search: exact missing or false on the embedded store: %s", a.raw)
	}
	return r
}

// chunks is the ordered list of returned chunks, to compare two answers.
func chunks(r searchAnswer) []string {
	var out []string
	for _, h := range r.Results {
		out = append(out, fmt.Sprintf("%s#%d", h.TicketID, h.Chunk))
	}
	return out
}

func TestMCPToolsListed(t *testing.T) {
	e := newMCPEnv(t)
	s := e.session(t, e.readToken(t, "anne", "acme"))
	tools, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*mcp.Tool{}
	for _, tl := range tools.Tools {
		got[tl.Name] = tl
	}
	for _, name := range []string{"search_tickets", "get_ticket"} {
		tl := got[name]
		if tl == nil {
			t.Fatalf("tool %s missing: %v", name, tools.Tools)
		}
		if tl.Description == "" || tl.OutputSchema == nil || tl.Annotations == nil || !tl.Annotations.ReadOnlyHint {
			t.Fatalf("%s: description, output schema and read-only hint expected: %+v", name, tl)
		}
	}
	if len(got) != 2 {
		t.Fatalf("tools: %v", tools.Tools)
	}
}

// TestMCPSearchMatchesHTTP: for the same token and query, search_tickets
// answers exactly what POST /v1/search answers, and a user and her agent see
// different results as they do there.
func TestMCPSearchMatchesHTTP(t *testing.T) {
	e := newMCPEnv(t)
	queries := []map[string]any{
		{"query": "login timeout", "top_k": 20},
		{"query": "API rate limit", "top_k": 5},
		{"query": "security finding SQL injection"},
		{"query": "outage timeline", "top_k": 10, "projects": []string{"acme-web"}},
		{"query": "login timeout", "top_k": 10, "mode": "lexical"},
		{"query": "login timeout", "top_k": 10, "mode": "hybrid"},
	}
	answers := map[string][][]string{}
	for _, who := range []string{"anne", "anne+copilot"} {
		tok := e.readToken(t, who, "acme")
		s := e.session(t, tok)
		for _, q := range queries {
			body := map[string]any{"query": q["query"]}
			if k, ok := q["top_k"]; ok {
				body["top_k"] = k
			}
			if ps, ok := q["projects"]; ok {
				body["filters"] = map[string]any{"projects": ps}
			}
			if m, ok := q["mode"]; ok {
				body["mode"] = m
			}
			h := e.httpSearch(t, tok, body)
			m := mcpSearch(t, s, q)
			if !slices.Equal(chunks(h), chunks(m)) || h.Status != m.Status {
				t.Fatalf("%s %q: /v1/search %v %s, mcp %v %s", who, q["query"], chunks(h), h.Status, chunks(m), m.Status)
			}
			if h.AuditID == m.AuditID {
				t.Fatalf("%s %q: one audit id for two searches", who, q["query"])
			}
			answers[who] = append(answers[who], chunks(m))
		}
	}
	differ := false
	for i := range queries {
		differ = differ || !slices.Equal(answers["anne"][i], answers["anne+copilot"][i])
	}
	if !differ {
		t.Fatalf("anne and anne+copilot see the same results for every query: %v", answers["anne"])
	}
	// Every MCP call left an audit record of its own kind, for the token's principal.
	n := 0
	for _, r := range e.log.Records() {
		if r.Kind == KindMCPSearch {
			n++
		}
	}
	if n != 2*len(queries) {
		t.Fatalf("%d mcp_search audit records, want %d", n, 2*len(queries))
	}
}

// TestMCPNoLeaks: for several principals and queries, every search_tickets
// result is one the demo org's reference says the principal may see, and one
// the engine's own Check allows; get_ticket agrees.
func TestMCPNoLeaks(t *testing.T) {
	e := newMCPEnv(t)
	queries := []string{"login timeout", "invoice dispute", "salary review", "security finding SQL injection", "outage timeline"}
	ps := map[string]authz.Principal{
		"anne":         {Kind: authz.KindUser, Tenant: "acme", User: "anne"},
		"anne+copilot": {Kind: authz.KindAgent, Tenant: "acme", User: "anne", Agent: "copilot"},
		"anne+mailbot": {Kind: authz.KindAgent, Tenant: "acme", User: "anne", Agent: "mailbot"},
		"frank":        {Kind: authz.KindUser, Tenant: "acme", User: "frank"},
		"hank":         {Kind: authz.KindUser, Tenant: "globex", User: "hank"},
	}
	for who, p := range ps {
		t.Run(who, func(t *testing.T) {
			want := visibleTo(t, who)
			s := e.session(t, e.readToken(t, who, p.Tenant))
			seen := map[string]bool{}
			for _, q := range queries {
				r := mcpSearch(t, s, map[string]any{"query": q, "top_k": 20})
				for _, h := range r.Results {
					if !want[h.TicketID] || h.TenantID != p.Tenant {
						t.Fatalf("%q: %s got %s (%s), which it may not see", q, who, h.TicketID, h.TenantID)
					}
					if !seen[h.TicketID] && !e.allowed(t, p, h.TicketID) {
						t.Fatalf("%q: %s got %s, which the engine refuses", q, who, h.TicketID)
					}
					seen[h.TicketID] = true
				}
			}
			if len(want) > 0 && len(seen) == 0 {
				t.Fatalf("%s sees %d tickets but no query found any", who, len(want))
			}
			for _, d := range demoTickets(t) {
				var tk ticketResponse
				res := callTool(t, s, "get_ticket", map[string]any{"id": d.ID}, &tk)
				if res.IsError == want[d.ID] {
					t.Fatalf("get_ticket %s as %s: error %v, reference says visible %v", d.ID, who, res.IsError, want[d.ID])
				}
				if !res.IsError && (tk.ID != d.ID || tk.Project != d.Project || tk.AuditID == "") {
					t.Fatalf("get_ticket %s: %+v", d.ID, tk)
				}
			}
		})
	}
}

func (e *mcpEnv) allowed(t *testing.T, p authz.Principal, id string) bool {
	t.Helper()
	ok, err := e.fixture.engine.Check(context.Background(), authz.Query{ContextualTuples: p.ContextualTuples(), Consistency: authz.HigherConsistency},
		authz.Check{User: p.Subject(), Relation: p.ViewRelation(), Object: "ticket:" + id})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestMCPGetTicketNotFoundParity: an invisible ticket, a missing one and a
// malformed id answer the same tool error, with no structured content; a
// visible one answers its fields and an mcp_ticket audit record.
func TestMCPGetTicketNotFoundParity(t *testing.T) {
	e := newMCPEnv(t)
	s := e.session(t, e.readToken(t, "anne+copilot", "acme"))
	want := visibleTo(t, "anne+copilot")
	var visible, invisible string
	for _, d := range demoTickets(t) {
		switch {
		case want[d.ID] && visible == "":
			visible = d.ID
		case !want[d.ID] && d.Tenant == "acme" && invisible == "":
			invisible = d.ID
		}
	}
	var answers []string
	for _, id := range []string{invisible, "NOPE-404", "WEB-2", "../etc"} {
		res := callTool(t, s, "get_ticket", map[string]any{"id": id}, nil)
		if !res.IsError || res.StructuredContent != nil {
			t.Fatalf("get_ticket %s: want a tool error without content, got %+v", id, res)
		}
		answers = append(answers, text(res))
	}
	for _, a := range answers {
		if a != "ticket not found" {
			t.Fatalf("not-found answers differ: %q", answers)
		}
	}
	var tk ticketResponse
	res := callTool(t, s, "get_ticket", map[string]any{"id": visible}, &tk)
	if res.IsError || tk.ID != visible || tk.Body == "" || !strings.Contains(text(res), tk.Title) {
		t.Fatalf("get_ticket %s: %+v %q", visible, tk, text(res))
	}
	var rec bool
	for _, r := range e.log.Records() {
		rec = rec || r.ID == tk.AuditID && r.Kind == KindMCPTicket && r.Principal.Agent == "copilot"
	}
	if !rec {
		t.Fatalf("no mcp_ticket audit record %s for copilot", tk.AuditID)
	}
}

// TestMCPBadInput: search_tickets refuses what /v1/search refuses, naming the field.
func TestMCPBadInput(t *testing.T) {
	e := newMCPEnv(t)
	s := e.session(t, e.readToken(t, "anne", "acme"))
	for _, c := range []struct {
		args  map[string]any
		field string
	}{
		{map[string]any{"query": ""}, "query"},
		{map[string]any{"query": strings.Repeat("x", MaxQueryChars+1)}, "query"},
		{map[string]any{"query": "login", "top_k": 101}, "top_k"},
		{map[string]any{"query": "login", "projects": []string{"not a project!"}}, "filters.projects[0]"},
		{map[string]any{"query": "login", "mode": "fuzzy"}, "mode"},
	} {
		res := callTool(t, s, "search_tickets", c.args, nil)
		if !res.IsError || !strings.Contains(text(res), c.field) {
			t.Fatalf("%v: want a tool error naming %s, got %q", c.args, c.field, text(res))
		}
	}
	before := len(e.log.Records())
	res := callTool(t, s, "search_tickets", map[string]any{"top_k": 3}, nil)
	if !res.IsError {
		t.Fatalf("search without query: %q", text(res))
	}
	if n := len(e.log.Records()); n != before {
		t.Fatalf("refused input wrote %d audit records", n-before)
	}
}

// TestMCPAuth: no token, a bad token and a token for another audience are
// refused with 401 and the protected-resource pointer, before any tool runs; a
// token without tickets:read gets 403 insufficient_scope.
func TestMCPAuth(t *testing.T) {
	e := newMCPEnv(t)
	good := e.readToken(t, "anne", "acme")
	expired, err := e.dev.Mint(auth.TokenRequest{Subject: "anne", Tenant: "acme", Scopes: []string{ScopeTicketsRead},
		Audience: mcpAudience, TTL: time.Hour, Now: time.Now().Add(-2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, token string
		status      int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"garbage", "not-a-jwt", http.StatusUnauthorized},
		{"wrong audience", e.token(t, "anne", "acme", "https://other.example", ScopeTicketsRead), http.StatusUnauthorized},
		{"tampered", good[:len(good)-4] + "AAAA", http.StatusUnauthorized},
		{"expired", expired, http.StatusUnauthorized},
		{"no scope", e.token(t, "anne", "acme", mcpAudience, ScopeIndex), http.StatusForbidden},
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.log.Records())
			if _, err := e.connect(t, c.token); err == nil {
				t.Fatal("the SDK client connected")
			}
			req, err := http.NewRequest("POST", e.base+MCPPath, strings.NewReader(initialize))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			wa := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != c.status || !strings.Contains(wa, `resource_metadata="`+mcpAudience+`/.well-known/oauth-protected-resource"`) {
				t.Fatalf("status %d, WWW-Authenticate %q", resp.StatusCode, wa)
			}
			if c.status == http.StatusForbidden && !strings.Contains(wa, `error="insufficient_scope"`) {
				t.Fatalf("403 without insufficient_scope: %q", wa)
			}
			if n := len(e.log.Records()); n != before {
				t.Fatalf("refused request wrote %d audit records", n-before)
			}
		})
	}
	// The same token works: the refusals above are about the credential.
	mcpSearch(t, e.session(t, good), map[string]any{"query": "login timeout"})
}

// TestMCPFailClosed: with the engine or the store down, both tools answer a
// tool error that names no ticket and carries no results, and recover after.
func TestMCPFailClosed(t *testing.T) {
	e := newMCPEnv(t)
	s := e.session(t, e.readToken(t, "anne", "acme"))
	for _, down := range []interface{ Store(bool) }{&e.engine.down, &e.store.down} {
		down.Store(true)
		for _, c := range []struct {
			tool string
			args map[string]any
		}{
			{"search_tickets", map[string]any{"query": "login timeout"}},
			{"get_ticket", map[string]any{"id": "WEB-1"}},
		} {
			res := callTool(t, s, c.tool, c.args, nil)
			if !res.IsError || res.StructuredContent != nil || !strings.Contains(text(res), "unavailable") {
				t.Fatalf("%s with a backend down: %+v %q", c.tool, res, text(res))
			}
		}
		down.Store(false)
	}
	var tk ticketResponse
	if res := callTool(t, s, "get_ticket", map[string]any{"id": "WEB-1"}, &tk); res.IsError || tk.ID != "WEB-1" {
		t.Fatalf("after recovery: %q", text(res))
	}
}

// TestMCPPlainHTTP: one JSON-RPC tools/call over plain HTTP, without a session
// or initialize (the curl example of docs/mcp.md), answers JSON.
func TestMCPPlainHTTP(t *testing.T) {
	e := newMCPEnv(t)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_tickets","arguments":{"query":"login timeout","top_k":3}}}`
	req, err := http.NewRequest("POST", e.base+MCPPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+e.readToken(t, "anne", "acme"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Result struct {
			StructuredContent searchAnswer `json:"structuredContent"`
			IsError           bool         `json:"isError"`
		} `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	r := out.Result.StructuredContent
	if out.Result.IsError || len(r.Results) != 3 || r.Status != "complete" || r.AuditID == "" {
		t.Fatalf("%+v", out.Result)
	}
}

// TestMCPArgumentsCannotImpersonate: identity-looking arguments are refused by
// the input schema (no additional properties): a tool has no way to name a
// principal.
func TestMCPArgumentsCannotImpersonate(t *testing.T) {
	e := newMCPEnv(t)
	s := e.session(t, e.readToken(t, "anne+copilot", "acme"))
	for _, extra := range []map[string]any{{"user": "bob"}, {"sub": "bob", "tenant": "acme"}, {"act": nil}, {"principal": map[string]any{"user": "bob"}}} {
		args := map[string]any{"query": "salary review", "top_k": 20}
		for k, v := range extra {
			args[k] = v
		}
		if res := callTool(t, s, "search_tickets", args, nil); !res.IsError || res.StructuredContent != nil {
			t.Fatalf("%v: extra arguments accepted: %q", extra, text(res))
		}
	}
}

// TestMCPToolsWithoutPrincipal: a tool call that reaches a handler without the
// verified principal of its HTTP request is refused before the planner (which
// is nil here: reaching it would panic).
func TestMCPToolsWithoutPrincipal(t *testing.T) {
	tools := mcpTools{m: &MCP{}, log: slog.New(slog.DiscardHandler)}
	for _, req := range []*mcp.CallToolRequest{nil, {}, {Extra: &mcp.RequestExtra{}}} {
		if _, _, err := tools.search(context.Background(), req, SearchTicketsInput{Query: "login"}); err == nil || err.Error() != "missing or invalid credential" {
			t.Fatalf("search: %v", err)
		}
		if _, _, err := tools.get(context.Background(), req, GetTicketInput{ID: "WEB-1"}); err == nil || err.Error() != "missing or invalid credential" {
			t.Fatalf("get: %v", err)
		}
	}
}

// TestMCPConcurrentPrincipals: the tools are shared by all requests; calls by
// different principals at the same time each get their own principal's answer.
func TestMCPConcurrentPrincipals(t *testing.T) {
	e := newMCPEnv(t)
	args := map[string]any{"query": "login timeout", "top_k": 20}
	who := []string{"anne", "anne+copilot", "anne+mailbot"}
	sessions := map[string]*mcp.ClientSession{}
	want := map[string][]string{}
	for _, w := range who {
		sessions[w] = e.session(t, e.readToken(t, w, "acme"))
		want[w] = chunks(mcpSearch(t, sessions[w], args))
	}
	if slices.Equal(want["anne"], want["anne+copilot"]) {
		t.Fatalf("anne and her copilot see the same: %v", want["anne"])
	}
	var wg sync.WaitGroup
	for _, w := range who {
		for range 4 {
			wg.Go(func() {
				for range 5 {
					res, err := sessions[w].CallTool(context.Background(), &mcp.CallToolParams{Name: "search_tickets", Arguments: args})
					if err != nil || res.IsError {
						t.Errorf("%s: %v %+v", w, err, res)
						return
					}
					raw, _ := json.Marshal(res.StructuredContent)
					var r searchAnswer
					if err := json.Unmarshal(raw, &r); err != nil || !slices.Equal(chunks(r), want[w]) {
						t.Errorf("%s concurrently: %v, alone %v (%v)", w, chunks(r), want[w], err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
}

// TestMCPAPIKey: a service account's API key works as a bearer token and as
// X-API-Key, and sees what the service account may see.
func TestMCPAPIKey(t *testing.T) {
	e := newMCPEnv(t)
	dir := t.TempDir()
	fk, err := auth.OpenFileKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys := auth.NewKeys(fk, nil)
	_, key, err := keys.Create(context.Background(), "acme", "acme-ingest", "mcp test", []string{ScopeTicketsRead}, auth.Creator{Kind: auth.CreatorOperator})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{PublicURL: mcpAudience}, Deps{Auth: &auth.Authenticator{Keys: keys}})
	(&MCP{Planner: filter.New(filter.Config{}, e.engine, e.store, retrieval.NewHashing(retrieval.HashingConfig{Dim: 256}), e.log)}).Mount(srv)
	base := serveHandler(t, srv.Handler())
	want := visibleTo(t, "ingest")
	for _, name := range []string{"Authorization", "X-API-Key"} {
		value := key
		if name == "Authorization" {
			value = "Bearer " + key
		}
		s, err := connectTo(t, base, header{name, value})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r := mcpSearch(t, s, map[string]any{"query": "documentation", "top_k": 20})
		if len(r.Results) == 0 {
			t.Fatalf("%s: no results", name)
		}
		for _, h := range r.Results {
			if !want[h.TicketID] {
				t.Fatalf("%s: service account got %s", name, h.TicketID)
			}
		}
	}
}

// TestMCPProtectedResourceDiscovery: a client following the MCP authorization
// spec finds the metadata from the 401 challenge, and the go-sdk's own
// validation of it (RFC 9728 section 3.3) accepts it for the server's URL,
// which is the audience tokens must carry.
func TestMCPProtectedResourceDiscovery(t *testing.T) {
	srv := New(Config{AuthorizationServers: []string{"https://idp.example"}}, Deps{Auth: staticAuth{}})
	(&MCP{}).Mount(srv) // the planner is never reached without a credential
	base := serveHandler(t, srv.Handler())
	resp, err := http.Post(base+MCPPath, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, metadataURL, ok := strings.Cut(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`)
	metadataURL, _, _ = strings.Cut(metadataURL, `"`)
	if resp.StatusCode != http.StatusUnauthorized || !ok {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	prm, err := oauthex.GetProtectedResourceMetadata(context.Background(), metadataURL, base, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(prm.AuthorizationServers, []string{"https://idp.example"}) || !slices.Contains(prm.ScopesSupported, ScopeTicketsRead) {
		t.Fatalf("%+v", prm)
	}
}

// TestMCPBatchRefused: a JSON-RPC batch is refused as a whole with 400 and one
// JSON-RPC error before any tool runs (no audit record), whatever protocol
// version the client claims: the SDK still runs batches for versions before
// 2025-06-18, and one batch of 300 searches exhausted the process (issue 14).
func TestMCPBatchRefused(t *testing.T) {
	e := newMCPEnv(t)
	call := `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"search_tickets","arguments":{"query":"login timeout","top_k":100}}}`
	batch := " \n[" + fmt.Sprintf(call, 1) + "," + fmt.Sprintf(call, 2) + "]"
	for _, version := range []string{"", "2025-03-26", "2025-06-18"} {
		before := len(e.log.Records())
		hdr := []string{"Content-Type", "application/json", "Accept", "application/json, text/event-stream",
			"Authorization", "Bearer " + e.readToken(t, "anne", "acme")}
		if version != "" {
			hdr = append(hdr, "Mcp-Protocol-Version", version)
		}
		resp, body := hsend(t, http.MethodPost, e.base+MCPPath, batch, hdr...)
		var out struct {
			JSONRPC string          `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Error   struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != http.StatusBadRequest ||
			out.JSONRPC != "2.0" || string(out.ID) != "null" || out.Error.Code != -32600 || !strings.Contains(out.Error.Message, "batch") {
			t.Errorf("version %q: %d %s", version, resp.StatusCode, body)
		}
		if n := len(e.log.Records()) - before; n != 0 {
			t.Errorf("version %q: %d tool calls ran", version, n)
		}
	}
	// One call per request still works.
	resp, body := hsend(t, http.MethodPost, e.base+MCPPath, fmt.Sprintf(call, 3), "Content-Type", "application/json",
		"Accept", "application/json, text/event-stream", "Authorization", "Bearer "+e.readToken(t, "anne", "acme"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"structuredContent"`) {
		t.Fatalf("single call: %d %s", resp.StatusCode, body)
	}
}

// TestMCPInputSchemasPlainTypes: every tool argument has one JSON type, so
// tool-schema consumers that reject type lists accept them: the optional
// lists (projects, audit_ids, ticket_ids, principals) are "array", not
// ["null","array"], and a call that leaves them out still works.
func TestMCPInputSchemasPlainTypes(t *testing.T) {
	e := newFlowEnv(t)
	s, err := connectTo(t, e.base, header{name: "Authorization", value: "Bearer copilot"})
	if err != nil {
		t.Fatal(err)
	}
	tools, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	arrays := 0
	for _, tl := range tools.Tools {
		raw, err := json.Marshal(tl.InputSchema)
		if err != nil {
			t.Fatal(err)
		}
		var schema struct {
			Properties map[string]struct {
				Type any `json:"type"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(raw, &schema); err != nil {
			t.Fatal(err)
		}
		for name, p := range schema.Properties {
			typ, ok := p.Type.(string)
			if !ok {
				t.Errorf("%s.%s: type %v, want one type", tl.Name, name, p.Type)
			}
			if typ == "array" {
				arrays++
			}
		}
	}
	if arrays != 4 {
		t.Errorf("%d array arguments, want 4 (projects, audit_ids, ticket_ids, principals)", arrays)
	}
	var out map[string]any
	if res := callTool(t, s, "search_tickets", map[string]any{"query": "login timeout", "top_k": 2}, &out); res.IsError {
		t.Errorf("search without projects: %+v", res)
	}
	if res := callTool(t, s, "search_tickets", map[string]any{"query": "login timeout", "projects": []string{"acme-web"}}, &out); res.IsError {
		t.Errorf("search with projects: %+v", res)
	}
}
