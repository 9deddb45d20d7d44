package api

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/clearance-dev/clearance/authz"
)

// ticketTuples is every stored tuple whose object is ticket:id, as strings.
func (f *fixture) ticketTuples(t testing.TB, id string) []string {
	t.Helper()
	var out []string
	for tu, err := range f.engine.Read(context.Background(), authz.TupleFilter{Object: "ticket:" + id}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tu.String())
	}
	slices.Sort(out)
	return out
}

// TestDeletedTicketIDStartsClean (issue 14, defect 3): deleting HR-2 removes
// every tuple of ticket:HR-2 (erin's share too), so a new HR-2 in another
// project is not readable or searchable by erin.
func TestDeletedTicketIDStartsClean(t *testing.T) {
	e := newSearchEnv(t)
	erin := "erin"
	if a := do(t, "GET", e.base+"/v1/tickets/HR-2", erin, nil); a.code != 200 {
		t.Fatalf("erin reads the shared HR-2 before: %d %s", a.code, a.raw)
	}
	// Many shares and a block besides the project: more than one purge page.
	var extra []authz.Tuple
	for i := range 150 {
		extra = append(extra, authz.Tuple{User: "user:reader" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Relation: "viewer", Object: "ticket:HR-2"})
	}
	extra = append(extra, authz.Tuple{User: "user:anne", Relation: "blocked", Object: "ticket:HR-2"})
	if err := e.fixture.engine.Write(context.Background(), extra, nil); err != nil {
		t.Fatal(err)
	}
	if a := do(t, "DELETE", e.base+"/v1/tickets/HR-2", "indexer", nil); a.code != 204 {
		t.Fatalf("DELETE HR-2: %d %s", a.code, a.raw)
	}
	if got := e.ticketTuples(t, "HR-2"); len(got) != 0 {
		t.Fatalf("tuples of a deleted ticket survive: %d, e.g. %v", len(got), got[:min(3, len(got))])
	}
	// A new ticket with the same id, in another project.
	a := do(t, "POST", e.base+"/v1/tickets", "indexer", map[string]any{"tickets": []any{
		row("HR-2", "acme", "acme-finance", "Quarterly zeppelin budget reconciliation"),
	}})
	if a.code != 200 {
		t.Fatalf("re-create HR-2: %d %s", a.code, a.raw)
	}
	if got := e.ticketTuples(t, "HR-2"); !slices.Equal(got, []string{"ticket:HR-2#project@project:acme-finance"}) {
		t.Fatalf("tuples of the new HR-2: %v", got)
	}
	if a := do(t, "GET", e.base+"/v1/tickets/HR-2", erin, nil); a.code != 404 {
		t.Fatalf("erin reads the new HR-2: %d %s", a.code, a.raw)
	}
	if r := e.search(t, erin, map[string]any{"query": "zeppelin budget reconciliation", "top_k": 20}); slices.Contains(ids(r), "HR-2") {
		t.Fatalf("erin finds the new HR-2: %v", ids(r))
	}
	// Who should see it still does: the tenant admin.
	if a := do(t, "GET", e.base+"/v1/tickets/HR-2", "bob", nil); a.code != 200 {
		t.Fatalf("bob reads the new HR-2: %d %s", a.code, a.raw)
	}
}

// TestDeleteOtherTenantsTicketLooksMissing (issue 14, defect 5): a tenant's
// service account deleting another tenant's id gets exactly what a missing id
// gets, and nothing is deleted; in a batch too. Its own tickets, and tuples an
// interrupted delete left for its own ticket, it may delete.
func TestDeleteOtherTenantsTicketLooksMissing(t *testing.T) {
	e := newSearchEnv(t)
	ctx := context.Background()
	before := e.ticketTuples(t, "SEC-1")
	other := do(t, "DELETE", e.base+"/v1/tickets/SEC-1", "globex-sa", nil)
	missing := do(t, "DELETE", e.base+"/v1/tickets/NOPE-1", "globex-sa", nil)
	if other.code != 204 || missing.code != 204 || other.raw != missing.raw {
		t.Fatalf("another tenant's id: %d %q; a missing id: %d %q", other.code, other.raw, missing.code, missing.raw)
	}
	if _, err := e.fixture.store.Get(ctx, "SEC-1"); err != nil {
		t.Fatalf("SEC-1 deleted from the index by globex: %v", err)
	}
	if got := e.ticketTuples(t, "SEC-1"); !slices.Equal(got, before) {
		t.Fatalf("SEC-1 tuples changed: %v -> %v", before, got)
	}
	// The same in a batch: the summaries are identical.
	batch := func(id string) map[string]any {
		a := do(t, "POST", e.base+"/v1/tickets", "globex-sa", map[string]any{"tickets": []any{map[string]any{"id": id, "deleted": true}}})
		if a.code != 200 {
			t.Fatalf("batch delete %s: %d %s", id, a.code, a.raw)
		}
		delete(a.body, "duration_ns")
		return a.body
	}
	if o, m := batch("SEC-1"), batch("NOPE-1"); !jsonEqual(o, m) {
		t.Fatalf("batch answers differ: %v vs %v", o, m)
	}
	if _, err := e.fixture.store.Get(ctx, "SEC-1"); err != nil {
		t.Fatalf("SEC-1 deleted from the index by a globex batch: %v", err)
	}

	// Tuples left by an interrupted delete of acme's GHOST-1 (not indexed):
	// globex cannot remove them, acme's own service account can.
	ghost := []authz.Tuple{
		{User: "project:acme-web", Relation: "project", Object: "ticket:GHOST-1"},
		{User: "user:erin", Relation: "viewer", Object: "ticket:GHOST-1"},
	}
	if err := e.fixture.engine.Write(ctx, ghost, nil); err != nil {
		t.Fatal(err)
	}
	if a := do(t, "DELETE", e.base+"/v1/tickets/GHOST-1", "globex-sa", nil); a.code != 204 || len(e.ticketTuples(t, "GHOST-1")) != 2 {
		t.Fatalf("globex deleting acme's leftover: %d, tuples %v", a.code, e.ticketTuples(t, "GHOST-1"))
	}
	if a := do(t, "DELETE", e.base+"/v1/tickets/GHOST-1", "acme-index", nil); a.code != 204 || len(e.ticketTuples(t, "GHOST-1")) != 0 {
		t.Fatalf("acme deleting its leftover: %d, tuples %v", a.code, e.ticketTuples(t, "GHOST-1"))
	}
	// acme's service account deletes its own ticket.
	if a := do(t, "DELETE", e.base+"/v1/tickets/DOCS-3", "acme-index", nil); a.code != 204 {
		t.Fatalf("acme deleting DOCS-3: %d %s", a.code, a.raw)
	}
	if _, err := e.fixture.store.Get(ctx, "DOCS-3"); err == nil || len(e.ticketTuples(t, "DOCS-3")) != 0 {
		t.Fatalf("DOCS-3 not deleted: %v %v", err, e.ticketTuples(t, "DOCS-3"))
	}
	// Upserting another tenant's id stays refused: with global ids a create
	// necessarily tells that an id is taken (and nothing else about it).
	a := do(t, "POST", e.base+"/v1/tickets", "globex-sa", map[string]any{"tickets": []any{row("SEC-1", "globex", "globex-portal", "mine now")}})
	if a.code != 400 || a.field() != "tickets[0].id" {
		t.Fatalf("globex upserting SEC-1: %d %s", a.code, a.raw)
	}
	if tk, err := e.fixture.store.Get(ctx, "SEC-1"); err != nil || tk.Tenant != "acme" {
		t.Fatalf("SEC-1 after a refused upsert: %+v %v", tk, err)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
