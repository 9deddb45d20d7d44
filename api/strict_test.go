package api

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
)

// strictEnv serves every JSON-body endpoint on one real server: search, ticket
// upsert, relationships, grants, API keys and /mcp, over the demo org.
type strictEnv struct {
	*fixture
	base string
}

func newStrictEnv(t *testing.T) *strictEnv {
	t.Helper()
	f := newFixture(t)
	planner := filter.New(filter.Config{}, f.engine, f.store, retrieval.NewHashing(retrieval.HashingConfig{Dim: 256}), &filter.MemoryLog{})
	fk, err := auth.OpenFileKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	principals := staticAuth{"bob": {Kind: authz.KindUser, Tenant: "acme", User: "bob", Scopes: []string{ScopeTicketsRead}}}
	for k, v := range testPrincipals {
		principals[k] = v
	}
	srv := New(Config{}, Deps{
		Auth: principals, Engine: f.engine, APIKeys: auth.NewKeys(fk, nil),
		Areas: []Area{&SearchAPI{Planner: planner, Tickets: &TicketWriter{Store: f.store, Indexer: f.ix, Engine: f.engine}, Relationships: f.engine}},
	})
	(&MCP{Planner: planner, Version: "test"}).Mount(srv)
	return &strictEnv{fixture: f, base: serveHandler(t, srv.Handler())}
}

// TestStrictBodies: invalid UTF-8, a duplicate member and a case variant of a
// field name are refused with 400 naming the field, on every endpoint with a
// JSON body, and nothing is written (issue 14, defect 8). encoding/json
// replaced invalid bytes with U+FFFD, let the last duplicate win and matched
// names case-insensitively, so all of these used to be accepted.
func TestStrictBodies(t *testing.T) {
	e := newStrictEnv(t)
	ticket := func(title string) string {
		return `{"tickets":[{"id":"NEW-1","tenant":"acme","project":"acme-web","title":` + title + `,"body":"b","updated_at":"2026-01-02T03:04:05Z"}]}`
	}
	for _, c := range []struct {
		name, token, path, body, field string
	}{
		{"search utf8", "anne", "/v1/search", "{\"query\":\"caf\xe9 login\"}", "query"},
		{"search utf8 nested", "anne", "/v1/search", "{\"query\":\"login\",\"intent\":{\"description\":\"\xff\"}}", "intent.description"},
		{"search utf8 escaped surrogate", "anne", "/v1/search", `{"query":"login \ud800"}`, "query"},
		{"search duplicate", "anne", "/v1/search", `{"query":"login","query":"salary"}`, "query"},
		{"search duplicate nested", "anne", "/v1/search", `{"query":"login","filters":{"projects":["acme-web"],"projects":["acme-hr"]}}`, "filters.projects"},
		{"search case variant", "anne", "/v1/search", `{"query":"login","TOP_K":3}`, "TOP_K"},
		{"search unknown", "anne", "/v1/search", `{"query":"login","evil":1}`, "evil"},
		{"tickets utf8", "indexer", "/v1/tickets", ticket("\"t\xff\""), "tickets[0].title"},
		{"tickets duplicate", "indexer", "/v1/tickets", ticket(`"a","title":"b"`), "tickets[0].title"},
		{"tickets case variant", "indexer", "/v1/tickets", ticket(`"a","Title":"b"`), "tickets[0].Title"},
		{"relationships utf8", "operator", "/v1/relationships", "{\"writes\":[{\"user\":\"user:x\xff\",\"relation\":\"viewer\",\"object\":\"project:acme-web\"}]}", "writes[0].user"},
		{"relationships duplicate", "operator", "/v1/relationships", `{"writes":[{"user":"user:x","relation":"viewer","object":"project:acme-web","object":"project:acme-hr"}]}`, "writes[0].object"},
		{"relationships case variant", "operator", "/v1/relationships", `{"Writes":[]}`, "Writes"},
		{"grants utf8", "anne", "/v1/grants", "{\"agent\":\"copilot\xff\",\"projects\":[\"acme-web\"]}", "agent"},
		{"grants duplicate", "anne", "/v1/grants", `{"agent":"copilot","agent":"mailbot","projects":["acme-web"]}`, "agent"},
		{"grants case variant", "anne", "/v1/grants", `{"agent":"copilot","Projects":["acme-web"]}`, "Projects"},
		{"api-keys utf8", "bob", "/v1/tenants/acme/api-keys", "{\"service_account\":\"acme-ingest\",\"name\":\"n\xff\"}", "name"},
		{"api-keys duplicate", "bob", "/v1/tenants/acme/api-keys", `{"service_account":"acme-ingest","service_account":"x"}`, "service_account"},
		{"api-keys case variant", "bob", "/v1/tenants/acme/api-keys", `{"Service_Account":"acme-ingest"}`, "Service_Account"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := hsend(t, http.MethodPost, e.base+c.path, c.body, "Authorization", "Bearer "+c.token, "Content-Type", "application/json")
			p := problem(t, resp, body, http.StatusBadRequest)
			if len(p.Errors) != 1 || p.Errors[0].Field != c.field {
				t.Fatalf("want field %q: %s", c.field, body)
			}
		})
	}
	// Nothing was written: the refused ticket does not exist.
	if _, err := e.store.Get(context.Background(), "NEW-1"); err == nil {
		t.Fatal("a refused ticket upsert stored NEW-1")
	}
	// The same bodies, well formed, are accepted.
	resp, body := hsend(t, http.MethodPost, e.base+"/v1/tickets", ticket(`"caf\u00e9"`), "Authorization", "Bearer indexer", "Content-Type", "application/json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid upsert: %d %s", resp.StatusCode, body)
	}
	if tk, err := e.store.Get(context.Background(), "NEW-1"); err != nil || tk.Title != "café" {
		t.Fatalf("stored %+v, %v", tk, err)
	}
}

// TestStrictMCPBodies: the JSON-RPC body of /mcp, tool arguments included, is
// held to the same rules before the SDK decodes it.
func TestStrictMCPBodies(t *testing.T) {
	e := newStrictEnv(t)
	call := func(args string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_tickets","arguments":` + args + `}}`
	}
	for _, c := range []struct{ name, body, field string }{
		{"utf8", call("{\"query\":\"login \xff\"}"), "params.arguments.query"},
		{"duplicate", call(`{"query":"login","query":"salary"}`), "params.arguments.query"},
		{"duplicate envelope", `{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list"}`, "method"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := hsend(t, http.MethodPost, e.base+MCPPath, c.body, "Authorization", "Bearer anne",
				"Content-Type", "application/json", "Accept", "application/json, text/event-stream")
			p := problem(t, resp, body, http.StatusBadRequest)
			if len(p.Errors) != 1 || p.Errors[0].Field != c.field {
				t.Fatalf("want field %q: %s", c.field, body)
			}
		})
	}
	resp, body := hsend(t, http.MethodPost, e.base+MCPPath, call(`{"query":"caf\u00e9 login"}`), "Authorization", "Bearer anne",
		"Content-Type", "application/json", "Accept", "application/json, text/event-stream")
	if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"isError":true`) {
		t.Fatalf("valid call: %d %s", resp.StatusCode, body)
	}
}
