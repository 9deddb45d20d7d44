package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/authz"
	fgaembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/fgafile"
	"github.com/clearance-dev/clearance/testdata"
)

// demoEngine is the real embedded engine with the demo org.
func demoEngine(t *testing.T) authz.Engine {
	t.Helper()
	ctx := context.Background()
	e, err := fgaembedded.New(ctx, fgaembedded.Config{Datastore: fgaembedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	org, err := fgafile.Parse(testdata.OrgFGA)
	if err != nil {
		t.Fatal(err)
	}
	if err := org.WriteTuples(ctx, e, 0); err != nil {
		t.Fatal(err)
	}
	return e
}

func (env *identityEnv) bearer(t *testing.T, sub, tenant string, edit func(map[string]any), scopes ...string) []string {
	c := claimsFor(sub, tenant, scopes...)
	if edit != nil {
		edit(c)
	}
	return []string{"Authorization", "Bearer " + env.token(t, c), "Content-Type", "application/json"}
}

func agentCanView(t *testing.T, e authz.Engine, user, agent, project string) bool {
	t.Helper()
	p := authz.Principal{Kind: authz.KindAgent, User: user, Agent: agent}
	ok, err := e.Check(context.Background(), authz.Query{ContextualTuples: p.ContextualTuples(), Consistency: authz.HigherConsistency},
		authz.Check{User: p.Subject(), Relation: p.ViewRelation(), Object: "project:" + project})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestGrants: a user grants an agent some of their projects, lists and revokes;
// agents cannot grant; projects the user cannot view (or that do not exist, or
// belong to another tenant) are refused alike; tenant admins act within their
// tenant only.
func TestGrants(t *testing.T) {
	e := demoEngine(t)
	env := newIdentityEnv(t, e)
	erin := env.bearer(t, "erin", "acme", nil, "tickets:read")
	if agentCanView(t, e, "erin", "scribe", "acme-web") {
		t.Fatal("scribe can view acme-web before any grant")
	}
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	resp, body := hsend(t, http.MethodPost, env.url+"/v1/grants", `{"agent":"scribe","projects":["acme-web"],"expires_at":"`+exp.Format(time.RFC3339)+`"}`, erin...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("grant: %d %s", resp.StatusCode, body)
	}
	if !agentCanView(t, e, "erin", "scribe", "acme-web") || agentCanView(t, e, "erin", "scribe", "acme-api") {
		t.Fatal("the grant covers exactly acme-web")
	}
	if agentCanView(t, e, "anne", "scribe", "acme-web") {
		t.Fatal("erin's grant lends access to anne's agent")
	}

	// Refusals. Not viewable, other tenant and missing answer alike.
	reasons := map[string]string{}
	for _, pr := range []string{"acme-secret", "globex-ops", "no-such-project"} {
		resp, body := hsend(t, http.MethodPost, env.url+"/v1/grants", `{"agent":"scribe","projects":["`+pr+`"]}`, erin...)
		p := problem(t, resp, body, 400)
		if len(p.Errors) != 1 || p.Errors[0].Field != "projects[0]" {
			t.Fatalf("%s: %s", pr, body)
		}
		reasons[pr] = strings.ReplaceAll(p.Errors[0].Reason, pr, "X")
	}
	if reasons["acme-secret"] != reasons["globex-ops"] || reasons["globex-ops"] != reasons["no-such-project"] {
		t.Fatalf("refusals differ: %v", reasons)
	}
	for name, tc := range map[string]struct {
		hdr    []string
		body   string
		status int
	}{
		"agent token": {env.bearer(t, "erin", "acme", func(c map[string]any) { c["act"] = map[string]any{"sub": "scribe"} }), `{"agent":"scribe","projects":["acme-api"]}`, 403},
		"narrowed token widening": {env.bearer(t, "erin", "acme", func(c map[string]any) {
			c["authorization_details"] = []any{map[string]any{"type": "ticket_access", "projects": []string{"acme-web"}}}
		}), `{"agent":"scribe","projects":["acme-api"]}`, 400},
		"expired":       {erin, `{"agent":"scribe","projects":["acme-api"],"expires_at":"2020-01-01T00:00:00Z"}`, 400},
		"bad agent":     {erin, `{"agent":"a~b","projects":["acme-api"]}`, 400},
		"no projects":   {erin, `{"agent":"scribe","projects":[]}`, 400},
		"unknown field": {erin, `{"agent":"scribe","projects":["acme-api"],"user":"bob"}`, 400},
	} {
		resp, body := hsend(t, http.MethodPost, env.url+"/v1/grants", tc.body, tc.hdr...)
		problem(t, resp, body, tc.status)
		if agentCanView(t, e, "erin", "scribe", "acme-api") {
			t.Fatalf("%s: wrote a grant", name)
		}
		_ = name
	}

	list := func(hdr []string, query string) []Grant {
		t.Helper()
		resp, body := hget(t, env.url+"/v1/grants"+query, hdr...)
		if resp.StatusCode != 200 {
			t.Fatalf("list %s: %d %s", query, resp.StatusCode, body)
		}
		var out struct{ Grants []Grant }
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		return out.Grants
	}
	gs := list(erin, "")
	if len(gs) != 1 || gs[0].Project != "acme-web" || gs[0].Agent != "scribe" || gs[0].ExpiresAt == nil || !gs[0].ExpiresAt.Equal(exp) {
		t.Fatalf("erin's grants %+v", gs)
	}
	bob := env.bearer(t, "bob", "acme", nil)
	if gs := list(bob, "?user=erin"); len(gs) != 1 {
		t.Fatalf("tenant admin sees erin's grants: %+v", gs)
	}
	if gs := list(env.bearer(t, "gina", "globex", nil), "?user=erin"); len(gs) != 0 {
		t.Fatalf("another tenant's admin sees erin's grants: %+v", gs)
	}
	resp, body = hget(t, env.url+"/v1/grants?user=erin", env.bearer(t, "anne", "acme", nil)...)
	problem(t, resp, body, 403)

	// Revocation, effective at once.
	resp, body = hsend(t, http.MethodDelete, env.url+"/v1/grants/scribe?project=acme-web", "", erin...)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "acme-web") {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if agentCanView(t, e, "erin", "scribe", "acme-web") {
		t.Fatal("revoked grant still works")
	}
	if gs := list(erin, ""); len(gs) != 0 {
		t.Fatalf("after revoke: %+v", gs)
	}
	resp, body = hsend(t, http.MethodDelete, env.url+"/v1/grants/scribe", "", erin...)
	problem(t, resp, body, 404)

	// A tenant admin revokes a user's grant in their tenant.
	resp, body = hsend(t, http.MethodPost, env.url+"/v1/grants", `{"agent":"scribe","projects":["acme-web","acme-api"]}`, erin...)
	if resp.StatusCode != 201 {
		t.Fatalf("grant two: %d %s", resp.StatusCode, body)
	}
	resp, body = hsend(t, http.MethodDelete, env.url+"/v1/grants/scribe?user=erin", "", env.bearer(t, "gina", "globex", nil)...)
	problem(t, resp, body, 404)
	resp, body = hsend(t, http.MethodDelete, env.url+"/v1/grants/scribe?user=erin", "", bob...)
	if resp.StatusCode != 200 {
		t.Fatalf("admin revoke: %d %s", resp.StatusCode, body)
	}
	if agentCanView(t, e, "erin", "scribe", "acme-web") || agentCanView(t, e, "erin", "scribe", "acme-api") {
		t.Fatal("admin revocation did not take")
	}
}

// TestAPIKeys: tenant admins (per the engine) and operators create keys; the key
// is shown once, authenticates as exactly its service account and tenant, and
// stops working on the next request after revocation (also by another process).
func TestAPIKeys(t *testing.T) {
	e := demoEngine(t)
	if err := e.Write(context.Background(), []authz.Tuple{{User: "tenant:globex", Relation: "tenant", Object: "service_account:globex-sync"}}, nil); err != nil {
		t.Fatal(err)
	}
	env := newIdentityEnv(t, e)
	bob := env.bearer(t, "bob", "acme", nil)
	resp, body := hsend(t, http.MethodPost, env.url+"/v1/tenants/acme/api-keys", `{"service_account":"acme-ingest","name":"nightly sync"}`, bob...)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var created struct {
		auth.KeyInfo
		Key string `json:"key"`
	}
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Key, "clr_"+created.ID+"_") || created.Tenant != "acme" {
		t.Fatalf("created %+v", created)
	}
	secret := strings.TrimPrefix(created.Key, "clr_"+created.ID+"_")

	// Who may create: not members, not other tenants' admins, not agents or keys.
	for name, hdr := range map[string][]string{
		"member":       env.bearer(t, "anne", "acme", nil),
		"other admin":  env.bearer(t, "gina", "globex", nil),
		"admin agent":  env.bearer(t, "bob", "acme", func(c map[string]any) { c["act"] = map[string]any{"sub": "copilot"} }),
		"admin in url": env.bearer(t, "bob", "globex", nil),
		"api key":      {"Authorization", "Bearer " + created.Key},
	} {
		resp, body := hsend(t, http.MethodPost, env.url+"/v1/tenants/acme/api-keys", `{"service_account":"x"}`, hdr...)
		problem(t, resp, body, 403)
		_ = name
	}
	// The key of acme used on another tenant's URL.
	resp, body = hget(t, env.url+"/v1/tenants/globex/api-keys", "X-API-Key", created.Key)
	problem(t, resp, body, 403)
	// An operator may act on any tenant.
	resp, body = hsend(t, http.MethodPost, env.url+"/v1/tenants/globex/api-keys", `{"service_account":"globex-sync","scopes":["clearance:index"]}`, env.bearer(t, "olga", "ops", nil, "clearance:admin")...)
	if resp.StatusCode != 201 {
		t.Fatalf("operator create: %d %s", resp.StatusCode, body)
	}
	resp, body = hsend(t, http.MethodPost, env.url+"/v1/tenants/acme/api-keys", `{"service_account":"acme-ingest","scopes":["clearance:admin"]}`, bob...)
	if p := problem(t, resp, body, 400); p.Errors[0].Field != "scopes[0]" {
		t.Fatalf("operator scope on a key: %s", body)
	}

	// The key authenticates as its service account, by either header.
	for _, hdr := range [][]string{{"Authorization", "Bearer " + created.Key}, {"X-API-Key", created.Key}} {
		resp, body := hget(t, env.url+"/v1/whoami", hdr...)
		var p authz.Principal
		if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
			t.Fatalf("whoami: %d %s", resp.StatusCode, body)
		}
		if p.Kind != authz.KindServiceAccount || p.ServiceAccount != "acme-ingest" || p.Tenant != "acme" || p.APIKeyID != created.ID || p.AuthMethod != "api_key" || !p.HasScope("tickets:read") || p.Subject() != "service_account:acme-ingest" {
			t.Fatalf("key principal %+v", p)
		}
	}
	// Wrong secret (same id, same length) and a flipped last character.
	flipped := created.Key[:len(created.Key)-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(created.Key, "0")]
	for _, k := range []string{"clr_" + created.ID + "_" + strings.Repeat("a", len(secret)), flipped} {
		resp, body := hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+k)
		problem(t, resp, body, 401)
	}

	// The list shows metadata, never the secret or its hash.
	resp, body = hget(t, env.url+"/v1/tenants/acme/api-keys", bob...)
	if resp.StatusCode != 200 || !strings.Contains(string(body), created.ID) || strings.Contains(string(body), secret) || strings.Contains(string(body), "hash") || strings.Contains(string(body), "globex-sync") {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), "last_used_at") {
		t.Fatalf("last use not recorded: %s", body)
	}

	// Revoke; the next request with the key is refused.
	resp, body = hsend(t, http.MethodDelete, env.url+"/v1/tenants/acme/api-keys/"+created.ID, "", bob...)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	resp, body = hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+created.Key)
	problem(t, resp, body, 401)
	resp, body = hsend(t, http.MethodDelete, env.url+"/v1/tenants/acme/api-keys/"+created.ID, "", bob...)
	problem(t, resp, body, 404)
}
