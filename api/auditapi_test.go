package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
)

// newAuditAPIServer serves the audit endpoints over real HTTP with bearer tokens
// mapped to principals.
func newAuditAPIServer(t *testing.T, a *AuditReader, tokens pageTokens) string {
	t.Helper()
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		_ = c.JSON(pageStatus(err), map[string]string{"title": http.StatusText(pageStatus(err)), "detail": pageError(err)})
	}
	g := e.Group("/v1", func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, _, err := tokens.authenticate(c.Request().Context(), strings.TrimPrefix(c.Request().Header.Get("Authorization"), "Bearer "))
			if err != nil {
				return c.JSON(http.StatusUnauthorized, map[string]string{"title": "Unauthorized"})
			}
			c.Set("principal", p)
			return next(c)
		}
	})
	a.Register(g, func(c echo.Context) (authz.Principal, error) {
		p, ok := c.Get("principal").(authz.Principal)
		if !ok {
			return authz.Principal{}, clearance.ErrUnauthenticated
		}
		return p, nil
	})
	srv := httptest.NewServer(e)
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
	tokens := pageTokens{
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
	norm := func(s, id string) string { return strings.ReplaceAll(s, id, "ID") }
	if norm(bodyOther, f.globex[0].ID) != norm(bodyMissing, strings.Repeat("0", 25)+"1") {
		t.Fatalf("another tenant's record answers differently from a missing one:\n%s\n%s", bodyOther, bodyMissing)
	}
	if code, _ := call(t, base, "op", "/v1/audit/"+f.globex[0].ID); code != 200 {
		t.Fatalf("operator reads a globex record: %d", code)
	}
}
