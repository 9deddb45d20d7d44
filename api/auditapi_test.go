package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/filelog"
	"github.com/clearance-dev/clearance/authz"
)

// newAuditAPIServer serves the audit area on the real server skeleton (error
// table, authentication middleware) with bearer tokens mapped to principals.
func newAuditAPIServer(t *testing.T, a *AuditReader, tokens staticAuth) string {
	t.Helper()
	srv := httptest.NewServer(New(Config{}, Deps{Auth: tokens, Areas: []Area{a}}).Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func call(t *testing.T, base, token, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAuditAPI: over HTTP, operators list every tenant, tenant admins only their
// own (another tenant's record by id is a 404 with the same body as a missing
// one), everyone else gets 403.
func TestAuditAPI(t *testing.T) {
	f := newAuditFixture(t)
	tokens := staticAuth{
		"op":    user("ops", "olga", ScopeAudit),
		"alice": user("acme", "alice"),
		"gina":  user("globex", "gina"),
		"bob":   user("acme", "bob", "tickets:read"),
		"agent": {Kind: authz.KindAgent, Tenant: "acme", User: "alice", Agent: "copilot", Scopes: []string{ScopeAudit}},
	}
	base := newAuditAPIServer(t, &AuditReader{Log: f.log, Engine: f.engine}, tokens)

	list := func(token, query string) (int, audit.Page) {
		t.Helper()
		code, body := call(t, base, token, "/v1/audit"+query)
		var p audit.Page
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &p); err != nil {
				t.Fatalf("list body: %v\n%s", err, body)
			}
		}
		return code, p
	}
	tenants := func(p audit.Page) map[string]int {
		m := map[string]int{}
		for _, r := range p.Records {
			m[r.Tenant]++
		}
		return m
	}
	if code, p := list("op", ""); code != 200 || fmt.Sprint(tenants(p)) != "map[acme:3 globex:3]" {
		t.Fatalf("operator: %d %v", code, tenants(p))
	}
	if code, p := list("alice", ""); code != 200 || fmt.Sprint(tenants(p)) != "map[acme:3]" {
		t.Fatalf("acme admin: %d %v", code, tenants(p))
	}
	if code, p := list("gina", "?ticket=T-secret"); code != 200 || fmt.Sprint(tenants(p)) != "map[globex:3]" {
		t.Fatalf("globex admin by ticket: %d %v", code, tenants(p))
	}
	if code, _ := list("alice", "?tenant=globex"); code != http.StatusForbidden {
		t.Fatalf("acme admin asking for globex: %d, want 403", code)
	}
	for _, tok := range []string{"bob", "agent"} {
		if code, _ := list(tok, ""); code != http.StatusForbidden {
			t.Fatalf("%s: %d, want 403", tok, code)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/audit", nil)
	req.Header.Set("Authorization", "Bearer bob")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, `insufficient_scope`) || !strings.Contains(h, ScopeAudit) {
		t.Fatalf("403 for a member: WWW-Authenticate %q, want insufficient_scope naming %s", h, ScopeAudit)
	}
	if code, _ := list("", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code, _ := list("op", "?limit=0x"); code != http.StatusBadRequest {
		t.Fatalf("bad limit: %d, want 400", code)
	}
	// Paging over HTTP.
	code, p := list("op", "?limit=4")
	if code != 200 || len(p.Records) != 4 || p.Next == "" {
		t.Fatalf("first page: %d %d %q", code, len(p.Records), p.Next)
	}
	if code, p2 := list("op", "?limit=4&cursor="+p.Next); code != 200 || len(p2.Records) != 2 || p2.Next != "" {
		t.Fatalf("second page: %d %d %q", code, len(p2.Records), p2.Next)
	}

	// By id.
	// T-secret is a globex ticket: alice reads the record without its id.
	if code, body := call(t, base, "alice", "/v1/audit/"+f.acme[0].ID); code != 200 || !strings.Contains(body, f.acme[0].ID) ||
		!strings.Contains(body, "T-acme-0") || strings.Contains(body, "T-secret") || !strings.Contains(body, `"redacted":1`) {
		t.Fatalf("acme admin reads an acme record: %d %s", code, body)
	}
	codeOther, bodyOther := call(t, base, "alice", "/v1/audit/"+f.globex[0].ID)
	codeMissing, bodyMissing := call(t, base, "alice", "/v1/audit/"+strings.Repeat("0", 25)+"1")
	if codeOther != http.StatusNotFound || codeMissing != http.StatusNotFound {
		t.Fatalf("another tenant's record %d, a missing one %d; want 404 both", codeOther, codeMissing)
	}
	norm := func(s, id string) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(strings.ReplaceAll(s, id, "ID")), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "request_id") // differs per request
		return fmt.Sprint(m)
	}
	if norm(bodyOther, f.globex[0].ID) != norm(bodyMissing, strings.Repeat("0", 25)+"1") {
		t.Fatalf("another tenant's record answers differently from a missing one:\n%s\n%s", bodyOther, bodyMissing)
	}
	if code, _ := call(t, base, "op", "/v1/audit/"+f.globex[0].ID); code != 200 {
		t.Fatalf("operator reads a globex record: %d", code)
	}
}

// auditEngine is the real engine with its BatchCalls counted and, on demand,
// failing (fault injection only; everything else is the engine itself).
type auditEngine struct {
	authz.Engine
	batches   atomic.Int32
	failBatch atomic.Bool
}

func (e *auditEngine) BatchCheck(ctx context.Context, q authz.Query, c []authz.Check) ([]bool, error) {
	e.batches.Add(1)
	if e.failBatch.Load() {
		return nil, errInjected
	}
	return e.Engine.BatchCheck(ctx, q, c)
}

// redactionEnv is a real file log of decisions about DOCS-2, on which bob, acme's
// tenant admin, is blocked in the demo org (testdata/org.fga.yaml), read through a
// real engine loaded with that org.
type redactionEnv struct {
	log    *filelog.Log
	engine *auditEngine
	reader *AuditReader
	recs   map[string]*audit.Record
}

// blockedTicket is DOCS-2 as a whole id (DOCS-20 exists too).
var blockedTicket = regexp.MustCompile(`DOCS-2([^0-9]|$)`)

// Scores of DOCS-2 in the records: they must not show to bob either.
const docs2Score, docs2AgentScore = "0.8765", "0.5432"

var redactionTokens = staticAuth{
	"op":   user("ops", "olga", ScopeAudit),
	"bob":  user("acme", "bob", "tickets:read"),
	"gina": user("globex", "gina"),
}

func newRedactionEnv(t *testing.T) *redactionEnv {
	t.Helper()
	ctx := context.Background()
	l := openFileLog(t)
	env := &redactionEnv{log: l, engine: &auditEngine{Engine: demoEngine(t)}, recs: map[string]*audit.Record{}}
	env.reader = &AuditReader{Log: l, Engine: env.engine}
	cand := func(id, project string, chunk int, score float32, d audit.Decision) audit.Candidate {
		return audit.Candidate{TicketID: id, Project: project, Chunk: chunk, Score: score, Decision: d}
	}
	rec := func(tenant, sub, agent, kind string, cands ...audit.Candidate) *audit.Record {
		p := user(tenant, sub, "tickets:read")
		if agent != "" {
			p.Kind, p.Agent = authz.KindAgent, agent
		}
		return &audit.Record{Kind: kind, Tenant: tenant, Principal: p, Status: "complete", ModelID: "01MODEL",
			Consistency: "HIGHER_CONSISTENCY", Results: cands, Latency: map[string]int64{"total": 900}}
	}
	// Shaped like the planner's records (filter/search.go, filter/get.go).
	env.recs["search"] = rec("acme", "frank", "", "search",
		cand("DOCS-2", "acme-docs", 3, 0.8765, audit.Returned),
		cand("DOCS-1", "acme-docs", 0, 0.8123, audit.Returned),
		cand("SEC-1", "acme-secret", 0, 0.7001, audit.DeniedByCheck),
		cand("WEB-2", "acme-web", 1, 0.6502, audit.BeyondK))
	env.recs["search"].Query = "docs outage"
	env.recs["ticket"] = rec("acme", "frank", "", "ticket", cand("DOCS-2", "acme-docs", 0, 0, audit.Returned))
	env.recs["agent"] = rec("acme", "anne", "copilot", "mcp_search",
		cand("WEB-1", "acme-web", 0, 0.61, audit.Returned),
		cand("DOCS-2", "acme-docs", 5, 0.5432, audit.DeniedByCheck))
	env.recs["clean"] = rec("acme", "anne", "", "search",
		cand("WEB-1", "acme-web", 0, 0.7, audit.Returned), cand("WEB-3", "acme-web", 2, 0.6, audit.BeyondK))
	env.recs["error"] = rec("acme", "frank", "", "ticket")
	env.recs["error"].Status, env.recs["error"].Error = "error", "filter: check ticket: relationship engine unavailable: check ticket:DOCS-2: deadline exceeded"
	env.recs["globex"] = rec("globex", "gina", "", "ticket")
	env.recs["globex"].Status, env.recs["globex"].Plan.Notes = "exhausted", []string{"not found: DOCS-2"}
	for _, name := range []string{"search", "ticket", "agent", "clean", "error", "globex"} {
		if err := l.Append(ctx, env.recs[name]); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// rawPage is a list answer with each record kept as sent.
type rawPage struct {
	Records []json.RawMessage `json:"records"`
	Next    string            `json:"next_cursor"`
}

func decodeRecord(t *testing.T, raw []byte) audit.Record {
	t.Helper()
	var r audit.Record
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("record: %v\n%s", err, raw)
	}
	return r
}

// TestAuditRedaction: over HTTP, bob (acme's admin, blocked on DOCS-2) reads every
// acme decision about DOCS-2 without learning its id, project, chunk or score
// anywhere in the JSON, while the decisions and counts stay; the operator sees
// it all; the stored chain is untouched; one BatchCheck per answer; an engine
// failure answers an error, never the records.
func TestAuditRedaction(t *testing.T) {
	env := newRedactionEnv(t)
	base := newAuditAPIServer(t, env.reader, redactionTokens)

	// The operator sees everything, exactly as stored: the served JSON hashes to
	// the record's hash, and no record says "redacted".
	code, opBody := call(t, base, "op", "/v1/audit")
	var op rawPage
	if code != 200 || json.Unmarshal([]byte(opBody), &op) != nil || len(op.Records) != 6 {
		t.Fatalf("operator list: %d %s", code, opBody)
	}
	if !blockedTicket.MatchString(opBody) || !strings.Contains(opBody, docs2Score) || strings.Contains(opBody, `"redacted"`) {
		t.Fatalf("operator list does not show DOCS-2 as stored:\n%s", opBody)
	}
	stored := map[string]audit.Record{}
	for _, raw := range op.Records {
		r := decodeRecord(t, raw)
		if h, err := audit.HashOf(raw); err != nil || h != r.Hash || r.PrevHash == "" {
			t.Fatalf("operator's record %s hashes to %s (%v), its hash is %s", r.ID, h, err, r.Hash)
		}
		stored[r.ID] = r
	}

	// What bob must see of each acme record: the candidates he may view as
	// stored, the others as WithheldTicket with only their decision.
	redactedWant := map[string]int{"search": 1, "ticket": 1, "agent": 1, "clean": 0, "error": 1}
	checkBob := func(name string, raw []byte) {
		t.Helper()
		if blockedTicket.Match(raw) || strings.Contains(string(raw), docs2Score) || strings.Contains(string(raw), docs2AgentScore) {
			t.Errorf("%s: bob sees DOCS-2:\n%s", name, raw)
		}
		got, want := decodeRecord(t, raw), stored[env.recs[name].ID]
		if got.Redacted != redactedWant[name] {
			t.Errorf("%s: redacted %d, want %d", name, got.Redacted, redactedWant[name])
		}
		if len(got.Results) != len(want.Results) {
			t.Fatalf("%s: %d candidates, want %d", name, len(got.Results), len(want.Results))
		}
		for i, c := range want.Results {
			w := c
			if c.TicketID == "DOCS-2" {
				w = audit.Candidate{TicketID: WithheldTicket, Decision: c.Decision}
			}
			if got.Results[i] != w {
				t.Errorf("%s: candidate %d is %+v, want %+v", name, i, got.Results[i], w)
			}
		}
		// The hash commits to what was withheld; prev_hash is the previous
		// record's hash. Only an untouched record keeps its own.
		if got.PrevHash != "" || (got.Redacted == 0) != (got.Hash == want.Hash) || (got.Redacted > 0 && got.Hash != "") {
			t.Errorf("%s: redacted %d, hash %q (stored %q), prev_hash %q", name, got.Redacted, got.Hash, want.Hash, got.PrevHash)
		}
		if name == "error" && got.Error != "filter: check ticket: relationship engine unavailable: check ticket:(withheld): deadline exceeded" {
			t.Errorf("error record: bob reads error %q", got.Error)
		}
	}

	before := env.engine.batches.Load()
	code, body := call(t, base, "bob", "/v1/audit")
	var bob rawPage
	if code != 200 || json.Unmarshal([]byte(body), &bob) != nil || len(bob.Records) != 5 {
		t.Fatalf("bob's list: %d %s", code, body)
	}
	batches := env.engine.batches.Load() - before
	byID := map[string]string{}
	for name, r := range env.recs {
		byID[r.ID] = name
	}
	for _, raw := range bob.Records {
		checkBob(byID[decodeRecord(t, raw).ID], raw)
	}
	if batches != 1 {
		t.Fatalf("bob's list made %d BatchCheck calls, want 1", batches)
	}
	for name, r := range env.recs {
		if r.Tenant != "acme" {
			continue
		}
		before := env.engine.batches.Load()
		code, body := call(t, base, "bob", "/v1/audit/"+r.ID)
		if code != 200 {
			t.Fatalf("bob reads %s: %d %s", name, code, body)
		}
		if n := env.engine.batches.Load() - before; n != 1 {
			t.Errorf("bob reading %s made %d BatchCheck calls, want 1", name, n)
		}
		checkBob(name, []byte(body))
	}

	// gina, globex's admin, reads her own probe of DOCS-2: the note loses the id.
	code, body = call(t, base, "gina", "/v1/audit/"+env.recs["globex"].ID)
	if code != 200 || blockedTicket.MatchString(body) || !strings.Contains(body, `"not found: (withheld)"`) || !strings.Contains(body, `"redacted":1`) {
		t.Fatalf("gina reads her probe of an acme ticket: %d %s", code, body)
	}
	if _, opRec := call(t, base, "op", "/v1/audit/"+env.recs["globex"].ID); !strings.Contains(opRec, `"not found: DOCS-2"`) {
		t.Fatalf("operator reads the globex probe: %s", opRec)
	}

	// The ticket= filter cannot probe: a blocked ticket answers like an unknown
	// one and like an id that cannot be a ticket; a ticket bob may view works.
	if code, body := call(t, base, "op", "/v1/audit?ticket=DOCS-2"); code != 200 || strings.Count(body, `"model_id"`) != 3 {
		t.Fatalf("operator by ticket DOCS-2: %d %s", code, body)
	}
	codeBlocked, blocked := call(t, base, "bob", "/v1/audit?ticket=DOCS-2")
	for _, other := range []string{"NOPE-404", url.QueryEscape("no such/ticket")} {
		if code, body := call(t, base, "bob", "/v1/audit?ticket="+other); code != codeBlocked || body != blocked {
			t.Fatalf("bob by a blocked ticket: %d %s; by %s: %d %s", codeBlocked, blocked, other, code, body)
		}
	}
	if codeBlocked != 200 || blocked != "{\"records\":[]}\n" {
		t.Fatalf("bob by a blocked ticket: %d %q, want an empty page", codeBlocked, blocked)
	}
	if code, body := call(t, base, "bob", "/v1/audit?ticket=SEC-1"); code != 200 || strings.Count(body, `"model_id"`) != 1 || blockedTicket.MatchString(body) {
		t.Fatalf("bob by ticket SEC-1: %d %s", code, body)
	}

	// Reading redacted never touched the log: the chain verifies and the
	// operator's second read is byte for byte the first.
	if rep, err := env.log.Verify(context.Background()); err != nil || !rep.OK() || rep.Records != 6 {
		t.Fatalf("verify after redacted reads: %+v %v", rep, err)
	}
	if _, again := call(t, base, "op", "/v1/audit"); again != opBody {
		t.Fatalf("the operator's view changed after bob's reads:\n%s\n%s", opBody, again)
	}

	// Fail closed: with BatchCheck failing, bob gets an error and no record; the
	// operator, who needs no engine, still reads.
	env.engine.failBatch.Store(true)
	for _, path := range []string{"/v1/audit", "/v1/audit/" + env.recs["search"].ID, "/v1/audit?ticket=SEC-1"} {
		code, body := call(t, base, "bob", path)
		if code != http.StatusServiceUnavailable || strings.Contains(body, `"records"`) || strings.Contains(body, `"candidates"`) ||
			strings.Contains(body, "DOCS-") || strings.Contains(body, "WEB-") {
			t.Errorf("bob %s with BatchCheck failing: %d %s, want 503 without records", path, code, body)
		}
	}
	if code, _ := call(t, base, "op", "/v1/audit"); code != 200 {
		t.Fatalf("operator with BatchCheck failing: %d", code)
	}
}
