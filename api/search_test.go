package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clearance-dev/clearance/audit/filelog"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/testdata"
)

// Search principals of the demo org (testdata/org.fga.yaml), by token.
var searchPrincipals = map[string]authz.Principal{
	"bob":          {Kind: authz.KindUser, Tenant: "acme", User: "bob", Scopes: []string{ScopeTicketsRead}},
	"anne":         {Kind: authz.KindUser, Tenant: "acme", User: "anne", Scopes: []string{ScopeTicketsRead}},
	"anne+copilot": {Kind: authz.KindAgent, Tenant: "acme", User: "anne", Agent: "copilot", Scopes: []string{ScopeTicketsRead}},
	"anne+mailbot": {Kind: authz.KindAgent, Tenant: "acme", User: "anne", Agent: "mailbot", Scopes: []string{ScopeTicketsRead}},
	"frank":        {Kind: authz.KindUser, Tenant: "acme", User: "frank", Scopes: []string{ScopeTicketsRead}},
	"carol":        {Kind: authz.KindUser, Tenant: "acme", User: "carol", Scopes: []string{ScopeTicketsRead}},
	"hank":         {Kind: authz.KindUser, Tenant: "globex", User: "hank", Scopes: []string{ScopeTicketsRead}},
	"gina":         {Kind: authz.KindUser, Tenant: "globex", User: "gina", Scopes: []string{ScopeTicketsRead}},
	"ingest":       {Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "acme-ingest", Scopes: []string{ScopeTicketsRead}},
	"anne-noscope": {Kind: authz.KindUser, Tenant: "acme", User: "anne"},
	"erin":         {Kind: authz.KindUser, Tenant: "acme", User: "erin", Scopes: []string{ScopeTicketsRead}},
	"acme-index":   {Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "acme-ingest", Scopes: []string{ScopeIndex}},
}

// demoVisible is who sees what in the demo org, written from the store file's
// comments (not computed by the engine): projects seen whole, tickets shared
// directly, tickets blocked.
var demoVisible = map[string]struct {
	projects, shared, blocked []string
}{
	"bob":          {projects: []string{"acme-web", "acme-api", "acme-docs", "acme-secret", "acme-hr", "acme-finance"}, blocked: []string{"DOCS-2"}},
	"anne":         {projects: []string{"acme-web", "acme-api"}, shared: []string{"DOCS-1"}, blocked: []string{"WEB-2"}},
	"anne+copilot": {projects: []string{"acme-web"}, blocked: []string{"WEB-2"}},
	"anne+mailbot": {},
	"frank":        {projects: []string{"acme-web", "acme-docs", "acme-hr"}, shared: []string{"SEC-1"}},
	"carol":        {},
	"hank":         {projects: []string{"globex-portal", "globex-ops"}},
	"gina":         {projects: []string{"globex-portal", "globex-billing", "globex-ops"}},
	"ingest":       {projects: []string{"acme-docs"}},
}

type demoTicket struct{ ID, Tenant, Project string }

func demoTickets(t testing.TB) []demoTicket {
	t.Helper()
	var out []demoTicket
	sc := bufio.NewScanner(bytes.NewReader(testdata.Tickets))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var d demoTicket
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// visibleTo is the reference answer: the ids principal may see.
func visibleTo(t testing.TB, principal string) map[string]bool {
	v, ok := demoVisible[principal]
	if !ok {
		t.Fatalf("no reference for %s", principal)
	}
	out := map[string]bool{}
	for _, d := range demoTickets(t) {
		if (slices.Contains(v.projects, d.Project) || slices.Contains(v.shared, d.ID)) && !slices.Contains(v.blocked, d.ID) {
			out[d.ID] = true
		}
	}
	return out
}

// faultyEngine fails every read on demand (fault injection only: everything else
// is the real engine).
type faultyEngine struct {
	authz.Engine
	down atomic.Bool
}

var errInjected = fmt.Errorf("injected: %w", authz.ErrUnavailable)

func (f *faultyEngine) BatchCheck(ctx context.Context, q authz.Query, c []authz.Check) ([]bool, error) {
	if f.down.Load() {
		return nil, errInjected
	}
	return f.Engine.BatchCheck(ctx, q, c)
}

func (f *faultyEngine) Check(ctx context.Context, q authz.Query, c authz.Check) (bool, error) {
	if f.down.Load() {
		return false, errInjected
	}
	return f.Engine.Check(ctx, q, c)
}

func (f *faultyEngine) ListObjects(ctx context.Context, q authz.Query, user, rel, typ string) iter.Seq2[string, error] {
	if f.down.Load() {
		return func(yield func(string, error) bool) { yield("", errInjected) }
	}
	return f.Engine.ListObjects(ctx, q, user, rel, typ)
}

// faultyStore fails searches and reads on demand.
type faultyStore struct {
	retrieval.Store
	down atomic.Bool
}

func (f *faultyStore) Search(ctx context.Context, r retrieval.SearchRequest) (retrieval.SearchResult, error) {
	if f.down.Load() {
		return retrieval.SearchResult{}, fmt.Errorf("injected: %w", retrieval.ErrUnavailable)
	}
	return f.Store.Search(ctx, r)
}

func (f *faultyStore) SearchLexical(ctx context.Context, r retrieval.LexicalRequest) (retrieval.SearchResult, error) {
	if f.down.Load() {
		return retrieval.SearchResult{}, fmt.Errorf("injected: %w", retrieval.ErrUnavailable)
	}
	return f.Store.(retrieval.LexicalSearcher).SearchLexical(ctx, r)
}

func (f *faultyStore) Get(ctx context.Context, id string) (retrieval.Ticket, error) {
	if f.down.Load() {
		return retrieval.Ticket{}, fmt.Errorf("injected: %w", retrieval.ErrUnavailable)
	}
	return f.Store.Get(ctx, id)
}

type searchEnv struct {
	*fixture
	base   string
	engine *faultyEngine
	store  *faultyStore
}

// newSearchEnv serves the whole search side: the real planner over the real
// embedded engine and store, a durable audit log, the real server.
func newSearchEnv(t *testing.T) *searchEnv {
	t.Helper()
	f := newFixture(t)
	log, err := filelog.Open(context.Background(), filelog.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	eng := &faultyEngine{Engine: f.engine}
	st := &faultyStore{Store: f.store}
	planner := filter.New(filter.Config{}, eng, st, retrieval.NewHashing(retrieval.HashingConfig{Dim: 256}), log)
	api := &SearchAPI{Planner: planner, Tickets: &TicketWriter{Store: f.store, Indexer: f.ix, Engine: f.engine}, Relationships: f.engine}
	principals := staticAuth{}
	for k, v := range testPrincipals {
		principals[k] = v
	}
	for k, v := range searchPrincipals {
		principals[k] = v
	}
	srv := New(Config{}, Deps{Auth: principals, Areas: []Area{api}})
	base := serveHandler(t, srv.Handler())
	return &searchEnv{fixture: f, base: base, engine: eng, store: st}
}

type searchAnswer struct {
	Results []filter.Result `json:"results"`
	Status  string          `json:"status"`
	// Exact is always present (a pointer, so a missing field fails the tests).
	Exact   *bool  `json:"exact"`
	AuditID string `json:"audit_id"`
}

func (e *searchEnv) search(t *testing.T, token string, body map[string]any) searchAnswer {
	t.Helper()
	a := do(t, "POST", e.base+"/v1/search", token, body)
	if a.code != 200 {
		t.Fatalf("search as %s: %d %s", token, a.code, a.raw)
	}
	var r searchAnswer
	if err := json.Unmarshal([]byte(a.raw), &r); err != nil {
		t.Fatal(err)
	}
	if r.AuditID == "" {
		t.Fatalf("search as %s: no audit id", token)
	}
	return r
}

func ids(r searchAnswer) []string {
	var out []string
	for _, h := range r.Results {
		out = append(out, h.TicketID)
	}
	return out
}

// TestSearchVisibleSets: for every demo principal and several queries, every
// result is one the reference says the principal may see, and grouped by ticket
// with a top_k above the visible count the answer is exactly the visible set,
// marked exhausted.
func TestSearchVisibleSets(t *testing.T) {
	e := newSearchEnv(t)
	queries := []string{"login timeout", "invoice dispute", "security finding SQL injection", "salary review", "outage timeline"}
	for principal := range demoVisible {
		want := visibleTo(t, principal)
		t.Run(principal, func(t *testing.T) {
			for _, q := range queries {
				r := e.search(t, principal, map[string]any{"query": q, "top_k": 10})
				for _, h := range r.Results {
					if !want[h.TicketID] {
						t.Fatalf("%q: %s got %s, which it may not see", q, principal, h.TicketID)
					}
				}
				if len(want) >= 10 && (r.Status != "complete" || len(r.Results) != 10) {
					t.Fatalf("%q: %d results, status %s; %d tickets visible", q, len(r.Results), r.Status, len(want))
				}
			}
			r := e.search(t, principal, map[string]any{"query": "login timeout", "top_k": 100, "group_by_ticket": true})
			got := map[string]bool{}
			for _, id := range ids(r) {
				if got[id] {
					t.Fatalf("%s twice with group_by_ticket", id)
				}
				got[id] = true
			}
			switch {
			case len(want) <= 100:
				if r.Status != "exhausted" {
					t.Fatalf("status %s with %d visible, want exhausted", r.Status, len(want))
				}
				if missing, extra := diff(want, got); len(missing)+len(extra) > 0 {
					t.Fatalf("visible set: missing %v, extra %v", missing, extra)
				}
			default:
				if r.Status != "complete" || len(got) != 100 {
					t.Fatalf("%d results, status %s; want 100 complete", len(got), r.Status)
				}
			}
		})
	}
}

func diff(want, got map[string]bool) (missing, extra []string) {
	for id := range want {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	for id := range got {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// TestSearchTenantIsolation: both tenants have login-timeout tickets; each sees
// only its own, and filters naming the other tenant's projects give an empty
// answer, not an error.
func TestSearchTenantIsolation(t *testing.T) {
	e := newSearchEnv(t)
	for _, tc := range []struct{ who, prefix string }{{"bob", "acme"}, {"gina", "globex"}} {
		r := e.search(t, tc.who, map[string]any{"query": "login timeout", "top_k": 20})
		if len(r.Results) == 0 {
			t.Fatalf("%s: nothing found", tc.who)
		}
		for _, h := range r.Results {
			if h.TenantID != tc.prefix || !strings.HasPrefix(h.ProjectID, tc.prefix+"-") {
				t.Fatalf("%s got %s of %s/%s", tc.who, h.TicketID, h.TenantID, h.ProjectID)
			}
		}
	}
	for _, body := range []map[string]any{
		{"query": "login timeout", "filters": map[string]any{"projects": []string{"globex-portal"}}},
		{"query": "login timeout", "intent": map[string]any{"description": "triage", "projects": []string{"globex-portal", "no-such-project"}}},
	} {
		r := e.search(t, "bob", body)
		if len(r.Results) != 0 || r.Status != "exhausted" {
			t.Fatalf("bob with another tenant's project: %v %s", ids(r), r.Status)
		}
	}
	// Narrowing to one visible project keeps only that project.
	r := e.search(t, "anne", map[string]any{"query": "login timeout", "top_k": 20, "filters": map[string]any{"projects": []string{"acme-api", "acme-secret"}}})
	if len(r.Results) == 0 {
		t.Fatal("anne narrowed to acme-api: nothing")
	}
	for _, h := range r.Results {
		if h.ProjectID != "acme-api" {
			t.Fatalf("narrowed to acme-api, got %s in %s", h.TicketID, h.ProjectID)
		}
	}
}

// TestRevocationVisibleOnNextSearch: a tuple written or deleted through POST
// /v1/relationships changes the very next search and ticket read.
func TestRevocationVisibleOnNextSearch(t *testing.T) {
	e := newSearchEnv(t)
	has := func(r searchAnswer, id string) bool { return slices.Contains(ids(r), id) }
	q := map[string]any{"query": "login timeout SSO redirect Okta", "top_k": 5}
	if r := e.search(t, "anne", q); !has(r, "WEB-1") {
		t.Fatalf("anne should find WEB-1 first: %v", ids(r))
	}
	if a := do(t, "GET", e.base+"/v1/tickets/WEB-1", "anne", nil); a.code != 200 || a.body["id"] != "WEB-1" {
		t.Fatalf("GET WEB-1: %d %s", a.code, a.raw)
	}
	rel := func(kind string, user, relation, object string) {
		t.Helper()
		a := do(t, "POST", e.base+"/v1/relationships", "operator", map[string]any{kind: []any{map[string]any{"user": user, "relation": relation, "object": object}}})
		if a.code != 200 {
			t.Fatalf("relationships: %d %s", a.code, a.raw)
		}
	}
	rel("writes", "user:anne", "blocked", "ticket:WEB-1")
	if r := e.search(t, "anne", q); has(r, "WEB-1") {
		t.Fatalf("blocked WEB-1 still returned: %v", ids(r))
	}
	if r := e.search(t, "anne+copilot", q); has(r, "WEB-1") {
		t.Fatalf("anne's agent still gets blocked WEB-1: %v", ids(r))
	}
	if a := do(t, "GET", e.base+"/v1/tickets/WEB-1", "anne", nil); a.code != 404 {
		t.Fatalf("GET blocked WEB-1: %d %s", a.code, a.raw)
	}
	rel("deletes", "user:anne", "blocked", "ticket:WEB-1")
	if r := e.search(t, "anne", q); !has(r, "WEB-1") {
		t.Fatalf("unblocked WEB-1 not back: %v", ids(r))
	}
	// Revoke the agent's grant: the agent sees nothing, anne herself still does.
	rel("deletes", "delegation:anne~copilot", "granted", "project:acme-web")
	if r := e.search(t, "anne+copilot", q); len(r.Results) != 0 || r.Status != "exhausted" {
		t.Fatalf("copilot without a grant: %v %s", ids(r), r.Status)
	}
	// Remove anne's team from acme-api: its tickets disappear for her.
	rel("deletes", "team:acme-eng#member", "member", "project:acme-api")
	r := e.search(t, "anne", map[string]any{"query": "OAuth token endpoint login timeout", "top_k": 50})
	for _, h := range r.Results {
		if h.ProjectID == "acme-api" {
			t.Fatalf("anne still gets %s of acme-api", h.TicketID)
		}
	}
}

// TestGetInvisibleTicketLooksMissing: a ticket of another project, of another
// tenant, a blocked one and a missing one all answer the same 404 body.
func TestGetInvisibleTicketLooksMissing(t *testing.T) {
	e := newSearchEnv(t)
	get := func(token, id string) answer {
		t.Helper()
		req, _ := http.NewRequest("GET", e.base+"/v1/tickets/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Request-Id", "same-request-id")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return answer{code: resp.StatusCode, raw: string(raw)}
	}
	if a := get("anne", "API-3"); a.code != 200 {
		t.Fatalf("visible ticket: %d %s", a.code, a.raw)
	}
	missing := get("anne", "NO-SUCH-1")
	if missing.code != 404 {
		t.Fatalf("missing: %d %s", missing.code, missing.raw)
	}
	for _, id := range []string{"SEC-1", "HR-1", "PORTAL-1", "WEB-2", "bad%20id"} {
		a := get("anne", id)
		if a.code != 404 || a.raw != missing.raw {
			t.Fatalf("%s: %d %q\nmissing: %q", id, a.code, a.raw, missing.raw)
		}
	}
	if a := get("anne+mailbot", "API-3"); a.code != 404 || a.raw != missing.raw {
		t.Fatalf("expired agent: %d %s", a.code, a.raw)
	}
}

// TestSearchBadInput: every malformed request is a 4xx problem naming the field,
// and nothing is searched.
func TestSearchBadInput(t *testing.T) {
	e := newSearchEnv(t)
	long := strings.Repeat("a", 5000)
	cases := []struct {
		name  string
		token string
		body  any
		code  int
		field string
	}{
		{"malformed JSON", "anne", `{"query": "login`, 400, "body"},
		{"not an object", "anne", `["login timeout"]`, 400, "body"},
		{"empty body", "anne", ``, 400, "body"},
		{"trailing data", "anne", `{"query":"a"} {"query":"b"}`, 400, "body"},
		{"unknown field", "anne", map[string]any{"query": "login timeout", "tenant": "globex"}, 400, "tenant"},
		{"unknown nested field", "anne", map[string]any{"query": "x", "filters": map[string]any{"tickets": []string{"SEC-1"}}}, 400, "filters.tickets"},
		{"empty query", "anne", map[string]any{"query": ""}, 400, "query"},
		{"missing query", "anne", map[string]any{"top_k": 5}, 400, "query"},
		{"5000-character query", "anne", map[string]any{"query": long}, 400, "query"},
		{"top_k 0", "anne", map[string]any{"query": "x", "top_k": 0}, 400, "top_k"},
		{"top_k 1000", "anne", map[string]any{"query": "x", "top_k": 1000}, 400, "top_k"},
		{"top_k negative", "anne", map[string]any{"query": "x", "top_k": -1}, 400, "top_k"},
		{"top_k not a number", "anne", map[string]any{"query": "x", "top_k": "10"}, 400, "top_k"},
		{"bad project id", "anne", map[string]any{"query": "x", "filters": map[string]any{"projects": []string{"../etc"}}}, 400, "filters.projects[0]"},
		{"no read scope", "anne-noscope", map[string]any{"query": "x"}, 403, ""},
		{"no credential", "", map[string]any{"query": "x"}, 401, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := do(t, "POST", e.base+"/v1/search", c.token, c.body)
			if a.code != c.code {
				t.Fatalf("status %d, want %d: %s", a.code, c.code, a.raw)
			}
			if c.field != "" && a.field() != c.field {
				t.Fatalf("field %q, want %q: %s", a.field(), c.field, a.raw)
			}
			if strings.Contains(a.raw, "ticket_id") {
				t.Fatalf("error answer carries results: %s", a.raw)
			}
		})
	}
	// A 2 MB body is refused by the server's body limit.
	big := `{"query":"` + strings.Repeat("x", 2<<20) + `"}`
	if a := do(t, "POST", e.base+"/v1/search", "anne", big); a.code != 413 {
		t.Fatalf("2 MB body: %d %.200s", a.code, a.raw)
	}
	// The largest allowed query and top_k are fine.
	r := e.search(t, "anne", map[string]any{"query": strings.Repeat("login ", 4096/6), "top_k": 100})
	if r.Status == "" {
		t.Fatal("no status")
	}
}

// TestSearchFailsClosed: with the engine or the store down, search and ticket
// reads answer 503 with no data, for every path (tenant admin, pre-filter, agent).
func TestSearchFailsClosed(t *testing.T) {
	e := newSearchEnv(t)
	for _, down := range []struct {
		name string
		flag *atomic.Bool
	}{{"engine", &e.engine.down}, {"store", &e.store.down}} {
		t.Run(down.name, func(t *testing.T) {
			down.flag.Store(true)
			defer down.flag.Store(false)
			own := map[string]string{"bob": "WEB-1", "anne": "WEB-1", "anne+copilot": "WEB-1", "hank": "PORTAL-1"}
			for who, ticket := range own {
				a := do(t, "POST", e.base+"/v1/search", who, map[string]any{"query": "login timeout"})
				if a.code != 503 || strings.Contains(a.raw, "ticket_id") || strings.Contains(a.raw, "Login") {
					t.Fatalf("%s: %d %s", who, a.code, a.raw)
				}
				a = do(t, "GET", e.base+"/v1/tickets/"+ticket, who, nil)
				if a.code != 503 || strings.Contains(a.raw, "body") {
					t.Fatalf("GET as %s: %d %s", who, a.code, a.raw)
				}
			}
		})
	}
	// Back up: answers again.
	if r := e.search(t, "anne", map[string]any{"query": "login timeout"}); len(r.Results) == 0 {
		t.Fatal("no results after recovery")
	}
}

// TestSearchModes: every mode answers only visible tickets, an unknown mode is
// a 400 on the mode field, and a store without a lexical index answers
// lexical and hybrid with 501 (never a silent vector search).
func TestSearchModes(t *testing.T) {
	e := newSearchEnv(t)
	for _, mode := range []string{"vector", "lexical", "hybrid"} {
		for principal := range demoVisible {
			want := visibleTo(t, principal)
			r := e.search(t, principal, map[string]any{"query": "login timeout ERR_CONN_RESET", "top_k": 10, "mode": mode})
			for _, h := range r.Results {
				if !want[h.TicketID] {
					t.Fatalf("%s: %s got %s, which it may not see", mode, principal, h.TicketID)
				}
			}
		}
	}
	// A principal who sees something, so the store is read.
	var principal string
	for _, p := range slices.Sorted(maps.Keys(demoVisible)) {
		if len(visibleTo(t, p)) > 0 {
			principal = p
			break
		}
	}
	if a := do(t, "POST", e.base+"/v1/search", principal, map[string]any{"query": "x", "mode": "fuzzy"}); a.code != 400 || a.field() != "mode" {
		t.Fatalf("unknown mode: %d %s", a.code, a.raw)
	}
	e.store.down.Store(true)
	if a := do(t, "POST", e.base+"/v1/search", principal, map[string]any{"query": "x", "mode": "lexical"}); a.code != 503 {
		t.Fatalf("lexical arm down: %d %s", a.code, a.raw)
	}
	e.store.down.Store(false)

	vectorOnly := struct{ retrieval.Store }{e.fixture.store}
	planner := filter.New(filter.Config{}, e.fixture.engine, vectorOnly, retrieval.NewHashing(retrieval.HashingConfig{Dim: 256}), &filter.MemoryLog{})
	auth := staticAuth{}
	for k, v := range testPrincipals {
		auth[k] = v
	}
	for k, v := range searchPrincipals {
		auth[k] = v
	}
	srv := New(Config{}, Deps{Auth: auth, Areas: []Area{&SearchAPI{Planner: planner}}})
	base := serveHandler(t, srv.Handler())
	for _, mode := range []string{"lexical", "hybrid"} {
		a := do(t, "POST", base+"/v1/search", principal, map[string]any{"query": "x", "mode": mode})
		if a.code != 501 || !strings.Contains(a.raw, "unsupported") {
			t.Fatalf("%s on a vector-only store: %d %s", mode, a.code, a.raw)
		}
	}
	if a := do(t, "POST", base+"/v1/search", principal, map[string]any{"query": "login"}); a.code != 200 {
		t.Fatalf("default mode on a vector-only store: %d %s", a.code, a.raw)
	}
}
