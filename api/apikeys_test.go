package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/audit/filelog"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
)

// newKeyEnv is the identity env (real JWT verification, file-backed keys) with
// the search side: the real planner over the demo org in the embedded engine
// and the embedded store, /v1/search, /v1/tickets/{id} and /mcp.
func newKeyEnv(t *testing.T) (*identityEnv, *fixture) {
	t.Helper()
	f := newFixture(t)
	log, err := filelog.Open(context.Background(), filelog.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	planner := filter.New(filter.Config{}, f.engine, f.store, retrieval.NewHashing(retrieval.HashingConfig{Dim: 256}), log)
	return newIdentityEnvWith(t, f.engine, planner), f
}

type createdKey struct {
	auth.KeyInfo
	Key string `json:"key"`
}

func createKey(t *testing.T, env *identityEnv, tenant, body string, hdr []string) createdKey {
	t.Helper()
	resp, raw := hsend(t, http.MethodPost, env.url+"/v1/tenants/"+tenant+"/api-keys", body, hdr...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create key: %d %s", resp.StatusCode, raw)
	}
	var k createdKey
	if err := json.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// keySearch is the ticket ids a search with key returns.
func keySearch(t *testing.T, env *identityEnv, key, query string) []string {
	t.Helper()
	resp, raw := hsend(t, http.MethodPost, env.url+"/v1/search", `{"query":"`+query+`","top_k":50}`, "X-API-Key", key, "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("search: %d %s", resp.StatusCode, raw)
	}
	var r searchAnswer
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return ids(r)
}

// TestAPIKeyBoundedByMinter (issue 14, defect 2): bob, an acme admin blocked on
// DOCS-2, mints a key for acme-ingest (which may view acme-docs). The key must
// not see DOCS-2 by any read path, must lose what bob loses, and an operator's
// key for the same account is bounded by the account only.
func TestAPIKeyBoundedByMinter(t *testing.T) {
	env, f := newKeyEnv(t)
	ctx := context.Background()
	bob := env.bearer(t, "bob", "acme", nil)
	bobs := createKey(t, env, "acme", `{"service_account":"acme-ingest","name":"bob's"}`, bob)
	if bobs.CreatedBy == nil || *bobs.CreatedBy != (auth.Creator{Kind: auth.CreatorTenantAdmin, User: "bob"}) {
		t.Fatalf("created_by %+v", bobs.CreatedBy)
	}
	ops := createKey(t, env, "acme", `{"service_account":"acme-ingest","name":"olga's"}`, env.bearer(t, "olga", "ops", nil, ScopeAdmin))
	if ops.CreatedBy == nil || ops.CreatedBy.Kind != auth.CreatorOperator {
		t.Fatalf("operator created_by %+v", ops.CreatedBy)
	}

	get := func(key, id string) int {
		resp, _ := hget(t, env.url+"/v1/tickets/"+id, "X-API-Key", key)
		return resp.StatusCode
	}
	// The blocked ticket: invisible (404, like a missing one) with bob's key,
	// visible with the operator's; a ticket both may view is visible to both.
	for _, c := range []struct {
		key, id string
		want    int
	}{{bobs.Key, "DOCS-2", 404}, {bobs.Key, "DOCS-1", 200}, {ops.Key, "DOCS-2", 200}, {ops.Key, "DOCS-1", 200}} {
		if got := get(c.key, c.id); got != c.want {
			t.Fatalf("GET %s with the key of %s: %d, want %d", c.id, map[string]string{bobs.Key: "bob", ops.Key: "olga"}[c.key], got, c.want)
		}
	}
	// Search: DOCS-2 is the best match for its own title; never with bob's key.
	q := "Missing Python example for webhook signature verification"
	if got := keySearch(t, env, ops.Key, q); !slices.Contains(got, "DOCS-2") {
		t.Fatalf("operator key search lacks DOCS-2: %v", got)
	}
	got := keySearch(t, env, bobs.Key, q)
	if slices.Contains(got, "DOCS-2") || !slices.Contains(got, "DOCS-1") {
		t.Fatalf("bob's key search: %v", got)
	}
	want := visibleTo(t, "ingest")
	for _, id := range got {
		if !want[id] {
			t.Fatalf("bob's key got %s, which acme-ingest may not see", id)
		}
	}
	// MCP get_ticket and search_tickets: the same bound.
	s, err := connectTo(t, env.url, header{"X-API-Key", bobs.Key})
	if err != nil {
		t.Fatal(err)
	}
	if res := callTool(t, s, "get_ticket", map[string]any{"id": "DOCS-2"}, nil); !res.IsError || text(res) != "ticket not found" {
		t.Fatalf("mcp get_ticket DOCS-2 with bob's key: %+v", res)
	}
	if r := mcpSearch(t, s, map[string]any{"query": q, "top_k": 50}); slices.Contains(ids(r), "DOCS-2") {
		t.Fatalf("mcp search with bob's key: %v", ids(r))
	}

	// The bound is the minter's access now: bob stops being an admin, and his
	// key sees nothing more than bob (nothing), while olga's key is unchanged.
	if err := f.engine.Write(ctx, nil, []authz.Tuple{{User: "user:bob", Relation: "admin", Object: "tenant:acme"}}); err != nil {
		t.Fatal(err)
	}
	if got := get(bobs.Key, "DOCS-1"); got != 404 {
		t.Fatalf("DOCS-1 with the key of a former admin: %d", got)
	}
	if got := keySearch(t, env, bobs.Key, "documentation quickstart"); len(got) != 0 {
		t.Fatalf("search with the key of a former admin: %v", got)
	}
	if got := get(ops.Key, "DOCS-1"); got != 200 {
		t.Fatalf("DOCS-1 with the operator's key: %d", got)
	}
}

// TestAPIKeyServiceAccountOfTenant (issue 14, defect 2): a key is only made for
// a service account the engine places in the tenant; a missing account and
// another tenant's account get the same 400, for admins and operators alike.
func TestAPIKeyServiceAccountOfTenant(t *testing.T) {
	e := demoEngine(t)
	if err := e.Write(context.Background(), []authz.Tuple{{User: "tenant:globex", Relation: "tenant", Object: "service_account:globex-sync"}}, nil); err != nil {
		t.Fatal(err)
	}
	env := newIdentityEnv(t, e)
	var bodies []string
	for _, hdr := range [][]string{env.bearer(t, "bob", "acme", nil), env.bearer(t, "olga", "ops", nil, ScopeAdmin)} {
		for _, sa := range []string{"no-such-account", "globex-sync"} {
			resp, raw := hsend(t, http.MethodPost, env.url+"/v1/tenants/acme/api-keys", `{"service_account":"`+sa+`"}`, hdr...)
			p := problem(t, resp, raw, 400)
			if len(p.Errors) != 1 || p.Errors[0].Field != "service_account" {
				t.Fatalf("%s: %s", sa, raw)
			}
			bodies = append(bodies, p.Errors[0].Reason+"|"+p.Detail)
		}
	}
	for _, b := range bodies {
		if b != bodies[0] {
			t.Fatalf("answers differ: %q", bodies)
		}
	}
	resp, raw := hget(t, env.url+"/v1/tenants/acme/api-keys", env.bearer(t, "bob", "acme", nil)...)
	if resp.StatusCode != 200 || string(raw) != "{\"keys\":[]}\n" {
		t.Fatalf("refused creations wrote keys: %d %s", resp.StatusCode, raw)
	}
	// The other tenant's own admin (or an operator) may make the key there.
	createKey(t, env, "globex", `{"service_account":"globex-sync"}`, env.bearer(t, "olga", "ops", nil, ScopeAdmin))
}
