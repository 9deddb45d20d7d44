package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/audit"
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
	if code, body := call(t, base, "alice", "/v1/audit/"+f.acme[0].ID); code != 200 || !strings.Contains(body, f.acme[0].Hash) {
		t.Fatalf("acme admin reads an acme record: %d", code)
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
