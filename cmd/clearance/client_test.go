package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/client"
)

// TestGoClientAgainstServe drives the Go client against a real `serve --dev`:
// the demo org loaded with `relationships write --server`, tickets upserted,
// search and get filtered per user (an invisible ticket is ErrNotFound, like a
// missing one), grants created, used by an agent and revoked, a ticket
// deleted, a flow check denied and allowed, and a bad tuple refused as
// ErrInvalid naming its field.
func TestGoClientAgainstServe(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	base := startServe(t, data)
	_, admin, tickets := loadTestdataOrg(t, data, base)
	res, err := admin.UpsertTickets(ctx, tickets)
	if err != nil || res.Received != len(tickets) || res.Indexed != len(tickets) {
		t.Fatalf("upsert: %+v %v", res, err)
	}

	anne, _ := client.New(client.Config{Server: base, Credential: mint(t, data, "anne", "acme")})
	sr, err := anne.Search(ctx, client.SearchRequest{Query: "login timeout", TopK: 20})
	if err != nil || len(sr.Results) == 0 || sr.AuditID == "" || !sr.Exact {
		t.Fatalf("search: %+v %v (the embedded store answers exactly)", sr, err)
	}
	for _, r := range sr.Results {
		if !strings.HasPrefix(r.TicketID, "WEB-") && !strings.HasPrefix(r.TicketID, "API-") && r.TicketID != "DOCS-1" {
			t.Errorf("anne got %s", r.TicketID)
		}
	}
	if tk, err := anne.Ticket(ctx, "WEB-1"); err != nil || tk.Project != "acme-web" || tk.AuditID == "" {
		t.Fatalf("get WEB-1: %+v %v", tk, err)
	}
	for _, id := range []string{"SEC-1", "NOPE-1"} {
		if _, err := anne.Ticket(ctx, id); !errors.Is(err, clearance.ErrNotFound) {
			t.Errorf("get %s: %v, want ErrNotFound", id, err)
		}
	}

	// Grants: anne lets "helper" read acme-api; the agent sees only API-; revoked, nothing.
	if g, err := anne.CreateGrants(ctx, client.GrantRequest{Agent: "helper", Projects: []string{"acme-api"}}); err != nil || len(g) != 1 {
		t.Fatalf("grant: %+v %v", g, err)
	}
	if g, err := anne.ListGrants(ctx, ""); err != nil || !hasGrant(g, "helper", "acme-api") {
		t.Fatalf("list grants: %+v %v", g, err)
	}
	agent, _ := client.New(client.Config{Server: base, Credential: mint(t, data, "anne", "acme", "--act", "helper")})
	sr, err = agent.Search(ctx, client.SearchRequest{Query: "api rate limit error", TopK: 20})
	if err != nil || len(sr.Results) == 0 {
		t.Fatalf("agent search: %+v %v", sr, err)
	}
	for _, r := range sr.Results {
		if !strings.HasPrefix(r.TicketID, "API-") {
			t.Errorf("agent got %s", r.TicketID)
		}
	}
	if rev, err := anne.RevokeGrants(ctx, "helper", "", ""); err != nil || len(rev) != 1 {
		t.Fatalf("revoke: %+v %v", rev, err)
	}
	if sr, err = agent.Search(ctx, client.SearchRequest{Query: "api rate limit error"}); err != nil || len(sr.Results) != 0 {
		t.Fatalf("agent after revoke: %+v %v", sr, err)
	}

	// Flow check: bob (tenant admin) may not put SEC-1 into acme-docs, whose
	// members cannot view it; into acme-secret he may.
	bob, _ := client.New(client.Config{Server: base, Credential: mint(t, data, "bob", "acme")})
	fr, err := bob.FlowCheck(ctx, client.FlowRequest{Sources: client.FlowSources{TicketIDs: []string{"SEC-1"}}, Destination: client.FlowDestination{Project: "acme-docs"}})
	if err != nil || fr.Allowed || fr.Excluded == 0 || fr.AuditID == "" {
		t.Errorf("flow SEC-1 -> acme-docs: %+v %v, want denied", fr, err)
	}
	fr, err = bob.FlowCheck(ctx, client.FlowRequest{Sources: client.FlowSources{TicketIDs: []string{"SEC-1"}}, Destination: client.FlowDestination{Project: "acme-secret"}})
	if err != nil || !fr.Allowed {
		t.Errorf("flow SEC-1 -> acme-secret: %+v %v, want allowed", fr, err)
	}
	if _, err := bob.FlowCheck(ctx, client.FlowRequest{Destination: client.FlowDestination{Project: "acme-docs"}}); !errors.Is(err, clearance.ErrInvalid) {
		t.Errorf("flow without sources: %v, want ErrInvalid", err)
	}

	if err := admin.DeleteTicket(ctx, "WEB-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := anne.Ticket(ctx, "WEB-1"); !errors.Is(err, clearance.ErrNotFound) {
		t.Errorf("deleted ticket: %v", err)
	}

	_, err = admin.WriteRelationships(ctx, []client.Tuple{{User: "user:anne", Relation: "viewer", Object: "project"}}, nil)
	var fe *clearance.FieldError
	if !errors.Is(err, clearance.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "writes[0].object" {
		t.Errorf("bad tuple: %v (field %+v)", err, fe)
	}
	// Scopes: a tickets:read token may not write relationships.
	if _, err := anne.WriteRelationships(ctx, []client.Tuple{{User: "user:anne", Relation: "viewer", Object: "project:acme-secret"}}, nil); !errors.Is(err, clearance.ErrForbidden) {
		t.Errorf("anne writing tuples: %v, want ErrForbidden", err)
	}
}

func hasGrant(gs []client.Grant, agent, project string) bool {
	for _, g := range gs {
		if g.Agent == agent && g.Project == project {
			return true
		}
	}
	return false
}
