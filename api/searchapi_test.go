package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/testdata"
)

// fixture is the demo org in the real embedded engine (memory datastore) and the
// real embedded store, with every demo ticket indexed.
type fixture struct {
	engine authz.Engine
	store  retrieval.Store
	ix     *indexer.Indexer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	e := demoEngine(t)
	emb := retrieval.NewHashing(retrieval.HashingConfig{Dim: 256})
	st, err := storeembedded.Open(ctx, storeembedded.Config{Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ix, err := indexer.New(indexer.Config{Store: st, Embedder: emb})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := ix.Run(ctx, indexer.NewJSONLData("demo", testdata.Tickets, 256))
	if err != nil || sum.Failed > 0 {
		t.Fatalf("index demo tickets: %v %+v", err, sum.Failures)
	}
	return &fixture{engine: e, store: st, ix: ix}
}

// principals by bearer token, for the harness's authentication middleware
// (token verification itself is tested with the identity middleware).
var testPrincipals = map[string]authz.Principal{
	"indexer":   {Kind: authz.KindUser, Tenant: "acme", User: "ci-indexer", Scopes: []string{ScopeIndex}},
	"operator":  {Kind: authz.KindUser, Tenant: "acme", User: "olga", Scopes: []string{ScopeAdmin}},
	"anne":      {Kind: authz.KindUser, Tenant: "acme", User: "anne", Scopes: []string{ScopeTicketsRead}},
	"ingest":    {Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "acme-ingest", Scopes: []string{ScopeIndex}},
	"globex-sa": {Kind: authz.KindServiceAccount, Tenant: "globex", ServiceAccount: "globex-sync", Scopes: []string{ScopeIndex}},
}

// serve runs api on the real server (error table, body limit, authentication
// middleware) over real HTTP; credentials map to principals through staticAuth.
func serve(t testing.TB, api *SearchAPI, cfg Config) string {
	t.Helper()
	return serveHandler(t, New(cfg, Deps{Auth: staticAuth(testPrincipals), Areas: []Area{api}}).Handler())
}

func serveHandler(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

type answer struct {
	code int
	body map[string]any
	raw  string
}

// field is the first invalid field named by a problem+json answer.
func (a answer) field() string {
	errs, _ := a.body["errors"].([]any)
	if len(errs) == 0 {
		return ""
	}
	f, _ := errs[0].(map[string]any)["field"].(string)
	return f
}

func do(t testing.TB, method, url, token string, body any) answer {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func (f *fixture) projectTuples(t testing.TB, id string) []string {
	t.Helper()
	var out []string
	for tu, err := range f.engine.Read(context.Background(), authz.TupleFilter{Object: "ticket:" + id, Relation: "project"}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tu.User)
	}
	return out
}

func (f *fixture) canView(t testing.TB, user, id string) bool {
	t.Helper()
	ok, err := f.engine.Check(context.Background(), authz.Query{Consistency: authz.HigherConsistency},
		authz.Check{User: user, Relation: authz.RelationCanView, Object: "ticket:" + id})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func row(id, tenant, project, title string) map[string]any {
	return map[string]any{"id": id, "tenant": tenant, "project": project, "title": title,
		"body": "Body of " + title, "updated_at": "2026-11-01T10:00:00Z"}
}

func TestPostTicketsIndexesAndWritesTuples(t *testing.T) {
	f := newFixture(t)
	w := &TicketWriter{Store: f.store, Indexer: f.ix, Engine: f.engine}
	base := serve(t, &SearchAPI{Tickets: w, Relationships: f.engine}, Config{})

	a := do(t, "POST", base+"/v1/tickets", "indexer", map[string]any{"tickets": []any{
		row("NEW-1", "acme", "acme-web", "Quarterly zeppelin maintenance window"),
		row("NEW-2", "acme", "acme-api", "Zeppelin API rate limit"),
	}})
	if a.code != 200 || a.body["indexed"] != 2.0 {
		t.Fatalf("push: %d %s", a.code, a.raw)
	}
	if got, err := f.store.Get(context.Background(), "NEW-1"); err != nil || got.Project != "acme-web" {
		t.Fatalf("store: %+v %v", got, err)
	}
	if got := f.projectTuples(t, "NEW-1"); len(got) != 1 || got[0] != "project:acme-web" {
		t.Fatalf("tuples of NEW-1: %v", got)
	}
	// frank views acme-web but not acme-api: the engine agrees with the index.
	if !f.canView(t, "user:frank", "NEW-1") || f.canView(t, "user:frank", "NEW-2") {
		t.Fatal("frank: want NEW-1 visible and NEW-2 not")
	}

	// Move NEW-1 to acme-api: the old tuple must stop granting access.
	a = do(t, "POST", base+"/v1/tickets", "indexer", map[string]any{"tickets": []any{
		row("NEW-1", "acme", "acme-api", "Quarterly zeppelin maintenance window"),
	}})
	if a.code != 200 || a.body["moved"] != 1.0 {
		t.Fatalf("move: %d %s", a.code, a.raw)
	}
	if got := f.projectTuples(t, "NEW-1"); len(got) != 1 || got[0] != "project:acme-api" {
		t.Fatalf("tuples after move: %v", got)
	}
	if f.canView(t, "user:frank", "NEW-1") {
		t.Fatal("frank still sees NEW-1 after its move out of acme-web")
	}
	if got, _ := f.store.Get(context.Background(), "NEW-1"); got.Project != "acme-api" {
		t.Fatalf("store project after move: %q", got.Project)
	}

	// deleted: true removes the ticket and its tuple.
	a = do(t, "POST", base+"/v1/tickets", "indexer", map[string]any{"tickets": []any{
		map[string]any{"id": "NEW-2", "deleted": true},
	}})
	if a.code != 200 || a.body["deleted"] != 1.0 {
		t.Fatalf("delete row: %d %s", a.code, a.raw)
	}
	if _, err := f.store.Get(context.Background(), "NEW-2"); !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("NEW-2 still indexed: %v", err)
	}
	if got := f.projectTuples(t, "NEW-2"); len(got) != 0 {
		t.Fatalf("NEW-2 tuples after delete: %v", got)
	}

	// DELETE /v1/tickets/{id}, twice (idempotent).
	for range 2 {
		if a = do(t, "DELETE", base+"/v1/tickets/NEW-1", "indexer", nil); a.code != 204 {
			t.Fatalf("DELETE: %d %s", a.code, a.raw)
		}
	}
	if _, err := f.store.Get(context.Background(), "NEW-1"); !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("NEW-1 still indexed: %v", err)
	}
	if got := f.projectTuples(t, "NEW-1"); len(got) != 0 {
		t.Fatalf("NEW-1 tuples after DELETE: %v", got)
	}
}

// A batch with one bad row writes nothing, and the error names the row's field.
func TestPostTicketsBadRowWritesNothing(t *testing.T) {
	f := newFixture(t)
	w := &TicketWriter{Store: f.store, Indexer: f.ix, Engine: f.engine}
	base := serve(t, &SearchAPI{Tickets: w, Relationships: f.engine}, Config{})
	before, err := f.store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	good := row("OK-1", "acme", "acme-web", "A perfectly good ticket")
	moved := row("WEB-3", "acme", "acme-api", "Cart total shows stale currency after locale switch")
	cases := []struct {
		name  string
		token string
		bad   any
		field string
		code  int
	}{
		{"bad id", "indexer", row("bad id!", "acme", "acme-web", "x"), "tickets[2].id", 400},
		{"missing project", "indexer", map[string]any{"id": "X-1", "tenant": "acme", "title": "t", "body": "b"}, "tickets[2].project", 400},
		{"no title or body", "indexer", map[string]any{"id": "X-1", "tenant": "acme", "project": "acme-web"}, "tickets[2].title", 400},
		{"unknown field", "indexer", map[string]any{"id": "X-1", "tenant": "acme", "project": "acme-web", "title": "t", "colour": "red"}, "tickets[2].colour", 400},
		{"wrong type", "indexer", map[string]any{"id": 7, "tenant": "acme", "project": "acme-web", "title": "t"}, "tickets[2].id", 400},
		{"duplicate id", "indexer", row("OK-1", "acme", "acme-web", "again"), "tickets[2].id", 400},
		{"project of another tenant", "indexer", row("X-1", "acme", "globex-portal", "t"), "tickets[2].project", 400},
		{"service account writes another tenant", "globex-sa", row("X-1", "acme", "acme-web", "t"), "tickets[0].tenant", 400},
		{"service account overwrites another tenant's id", "globex-sa", row("WEB-1", "globex", "globex-portal", "t"), "tickets[2].id", 400},
		{"read scope only", "anne", row("X-1", "acme", "acme-web", "t"), "", 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rows := []any{good, moved, c.bad}
			if c.token == "globex-sa" {
				rows = []any{row("OK-G", "globex", "globex-portal", "fine"), row("OK-G2", "globex", "globex-ops", "fine"), c.bad}
				if strings.HasSuffix(c.field, "tenant") {
					rows = []any{c.bad}
				}
			}
			a := do(t, "POST", base+"/v1/tickets", c.token, map[string]any{"tickets": rows})
			if a.code != c.code {
				t.Fatalf("status %d, want %d: %s", a.code, c.code, a.raw)
			}
			if c.field != "" && a.field() != c.field {
				t.Fatalf("field %v, want %s: %s", a.field(), c.field, a.raw)
			}
			after, err := f.store.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Fatalf("store changed: %+v -> %+v", before, after)
			}
			for _, id := range []string{"OK-1", "OK-G", "OK-G2"} {
				if got := f.projectTuples(t, id); len(got) != 0 {
					t.Fatalf("tuple written for %s: %v", id, got)
				}
			}
			if got := f.projectTuples(t, "WEB-3"); len(got) != 1 || got[0] != "project:acme-web" {
				t.Fatalf("WEB-3 moved by a rejected batch: %v", got)
			}
		})
	}
	for _, body := range []string{`{"tickets":[`, `{"tickets":{}}`, ``, `{"tickets":[]}`, `{"tickets":[],"extra":1}`} {
		if a := do(t, "POST", base+"/v1/tickets", "indexer", body); a.code != 400 {
			t.Fatalf("%q: status %d: %s", body, a.code, a.raw)
		}
	}
}

func TestPostRelationships(t *testing.T) {
	f := newFixture(t)
	w := &TicketWriter{Store: f.store, Indexer: f.ix, Engine: f.engine}
	base := serve(t, &SearchAPI{Tickets: w, Relationships: f.engine}, Config{})
	tuple := func(user, rel, obj string) map[string]any {
		return map[string]any{"user": user, "relation": rel, "object": obj}
	}
	if !f.canView(t, "user:anne", "WEB-1") || f.canView(t, "user:anne", "SEC-1") {
		t.Fatal("demo org: anne should see WEB-1 and not SEC-1")
	}
	// Writes and deletes in one call.
	a := do(t, "POST", base+"/v1/relationships", "operator", map[string]any{
		"writes":  []any{tuple("user:anne", "blocked", "ticket:WEB-1"), tuple("user:anne", "viewer", "ticket:SEC-1")},
		"deletes": []any{tuple("user:frank", "viewer", "ticket:SEC-1")},
	})
	if a.code != 200 || a.body["written"] != 2.0 || a.body["deleted"] != 1.0 {
		t.Fatalf("write: %d %s", a.code, a.raw)
	}
	if f.canView(t, "user:anne", "WEB-1") || !f.canView(t, "user:anne", "SEC-1") || f.canView(t, "user:frank", "SEC-1") {
		t.Fatal("relationships not applied")
	}

	// Conditioned grant: accepted with its condition.
	a = do(t, "POST", base+"/v1/relationships", "operator", map[string]any{"writes": []any{map[string]any{
		"user": "delegation:erin~copilot", "relation": "granted", "object": "project:acme-api",
		"condition": map[string]any{"name": "not_expired", "context": map[string]any{"expires_at": "2030-01-01T00:00:00Z"}},
	}}})
	if a.code != 200 {
		t.Fatalf("conditioned write: %d %s", a.code, a.raw)
	}

	bad := []struct {
		name  string
		token string
		body  any
		code  int
		field string
	}{
		{"stored active tuple", "operator", map[string]any{"writes": []any{tuple("user:anne", "active", "delegation:anne~copilot")}}, 400, "writes[0].relation"},
		{"unknown relation", "operator", map[string]any{"writes": []any{tuple("user:erin", "viewer", "ticket:SEC-2"), tuple("user:erin", "overlord", "ticket:SEC-2")}}, 400, ""},
		{"wrong user type", "operator", map[string]any{"writes": []any{tuple("user:erin", "viewer", "ticket:SEC-2"), tuple("ticket:WEB-1", "viewer", "ticket:SEC-2")}}, 400, ""},
		{"malformed user", "operator", map[string]any{"writes": []any{tuple("erin", "viewer", "ticket:SEC-2")}}, 400, "writes[0].user"},
		{"empty", "operator", map[string]any{}, 400, "writes"},
		{"unknown field", "operator", `{"writes":[],"upserts":[]}`, 400, "upserts"},
		{"condition on delete", "operator", map[string]any{"deletes": []any{map[string]any{"user": "user:erin", "relation": "viewer", "object": "ticket:SEC-2", "condition": map[string]any{"name": "not_expired"}}}}, 400, "deletes[0].condition"},
		{"index scope is not enough", "indexer", map[string]any{"writes": []any{tuple("user:erin", "viewer", "ticket:SEC-2")}}, 403, ""},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			a := do(t, "POST", base+"/v1/relationships", c.token, c.body)
			if a.code != c.code {
				t.Fatalf("status %d, want %d: %s", a.code, c.code, a.raw)
			}
			if c.field != "" && a.field() != c.field {
				t.Fatalf("field %v, want %s", a.field(), c.field)
			}
			if f.canView(t, "user:erin", "SEC-2") {
				t.Fatal("a refused call wrote a tuple")
			}
		})
	}

	// A remote engine's tuples are not written through clearance.
	remote := serve(t, &SearchAPI{Tickets: w}, Config{})
	if a := do(t, "POST", remote+"/v1/relationships", "operator", map[string]any{"writes": []any{tuple("user:erin", "viewer", "ticket:SEC-2")}}); a.code != 409 {
		t.Fatalf("remote engine: %d %s", a.code, a.raw)
	}
}

// Concurrent moves of one ticket leave exactly one ticket#project tuple, and it
// names the project the index has.
func TestPostTicketsConcurrentMoves(t *testing.T) {
	f := newFixture(t)
	w := &TicketWriter{Store: f.store, Indexer: f.ix, Engine: f.engine}
	base := serve(t, &SearchAPI{Tickets: w, Relationships: f.engine}, Config{})
	projects := []string{"acme-web", "acme-api", "acme-docs", "acme-hr"}
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := row("WEB-5", "acme", projects[i%len(projects)], "Storefront returning 502 after CDN configuration push")
			if a := do(t, "POST", base+"/v1/tickets", "indexer", map[string]any{"tickets": []any{r}}); a.code != 200 {
				t.Errorf("push %d: %d %s", i, a.code, a.raw)
			}
		}()
	}
	wg.Wait()
	got := f.projectTuples(t, "WEB-5")
	st, err := f.store.Get(context.Background(), "WEB-5")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "project:"+st.Project {
		t.Fatalf("tuples %v, index project %s", got, st.Project)
	}
}
