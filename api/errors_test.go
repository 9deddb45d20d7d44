package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// TestProblemDetailWithoutKind: a problem's detail does not repeat the kind
// its status, type and title already give ("...: forbidden"), while the error
// keeps its kind for errors.Is and the table.
func TestProblemDetailWithoutKind(t *testing.T) {
	for _, row := range errorTable {
		err := fmt.Errorf("load x: %w", fmt.Errorf("the reason given: %w", row.kind))
		p := problemFor(err)
		if p.Status != row.status || !errors.Is(err, row.kind) {
			t.Errorf("%v: status %d, want %d", row.kind, p.Status, row.status)
		}
		if strings.HasSuffix(p.Detail, row.kind.Error()) {
			t.Errorf("%v: detail %q ends with the kind", row.kind, p.Detail)
		}
		if p.Status < 500 && p.Status != http.StatusUnauthorized && p.Status != http.StatusRequestTimeout && p.Detail != "load x: the reason given" {
			t.Errorf("%v: detail %q, want %q", row.kind, p.Detail, "load x: the reason given")
		}
	}
	// A short subject keeps its kind: "ticket" alone says nothing.
	if p := problemFor(fmt.Errorf("ticket: %w", clearance.ErrNotFound)); p.Detail != "ticket: not found" {
		t.Errorf("detail %q", p.Detail)
	}
	if p := problemFor(fmt.Errorf("request body: %w", clearance.ErrTooLarge)); p.Detail != "request body: too large" {
		t.Errorf("detail %q", p.Detail)
	}
	// A kind in the middle of the text is the text's own and stays.
	if p := problemFor(fmt.Errorf("not found is not a reason: %w", clearance.ErrConflict)); p.Detail != "not found is not a reason" {
		t.Errorf("detail %q", p.Detail)
	}

	// Through a real handler: an agent may not make grants.
	srv := httptest.NewServer(fullServer(t, Config{}, Deps{Auth: staticAuth{
		"agent": {Kind: authz.KindAgent, Tenant: "acme", User: "anne", Agent: "copilot", Scopes: []string{ScopeTicketsRead}},
	}}).Handler())
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("POST", srv.URL+"/v1/grants", strings.NewReader(`{"agent":"x","projects":["p"]}`))
	req.Header.Set("Authorization", "Bearer agent")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p Problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden || p.Detail == "" || strings.HasSuffix(p.Detail, ": forbidden") {
		t.Errorf("agent's grant: %d %q", resp.StatusCode, p.Detail)
	}
}
