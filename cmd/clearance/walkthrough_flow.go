package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// demoFlowSetup lets anne's copilot read two SEC tickets: anne was asked to
// help on them (shared with her), and she granted her copilot acme-secret. It is
// written after the six-principal table, which therefore stays as it was.
var demoFlowSetup = map[string]any{"writes": []map[string]string{
	{"user": "user:anne", "relation": "viewer", "object": "ticket:SEC-3"},
	{"user": "user:anne", "relation": "viewer", "object": "ticket:SEC-5"},
	{"user": "delegation:anne~copilot", "relation": "granted", "object": "project:acme-secret"},
}}

// demoFlowQuery is the copilot's search of acme-secret.
var demoFlowQuery = map[string]any{"query": "security finding", "top_k": 5, "filters": map[string]any{"projects": []string{"acme-secret"}}}

type flowAnswer struct {
	Allowed  bool     `json:"allowed"`
	Reasons  []string `json:"reasons"`
	AuditID  string   `json:"audit_id"`
	Audience int      `json:"audience"`
	Excluded int      `json:"excluded"`
}

// flowWalkthrough shows the seed's data-leakage case (SPEC 13): anne's copilot
// reads SEC tickets, then asks whether a summary may go into acme-docs (denied:
// most people there may not read them) and into acme-secret (allowed). It
// prints the curl and MCP lines that ask the same.
func flowWalkthrough(ctx context.Context, w io.Writer, client *http.Client, base, admin, copilot string) error {
	if _, err := postJSON(ctx, client, base+"/v1/relationships", admin, demoFlowSetup); err != nil {
		return fmt.Errorf("demo flow setup: %w", err)
	}
	body, err := postJSON(ctx, client, base+"/v1/search", copilot, demoFlowQuery)
	if err != nil {
		return fmt.Errorf("flow demo search: %w", err)
	}
	var r demoResult
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("flow demo search: %w", err)
	}
	var ids []string
	for _, h := range r.Results {
		ids = append(ids, h.TicketID)
	}
	fmt.Fprintf(w, "\nclearance demo: may what the copilot read go elsewhere? (POST /v1/flow/check, MCP check_write)\n\n")
	fmt.Fprintf(w, "  anne was asked to help on SEC-3 and SEC-5 and granted her copilot acme-secret.\n")
	fmt.Fprintf(w, "  anne+copilot searched %q in acme-secret and was given %s (audit %s).\n\n",
		demoFlowQuery["query"], strings.Join(ids, ", "), r.AuditID)
	for _, dest := range []string{"acme-docs", "acme-secret"} {
		body, err := postJSON(ctx, client, base+"/v1/flow/check", copilot, flowBody(r.AuditID, dest))
		if err != nil {
			return fmt.Errorf("flow check into %s: %w", dest, err)
		}
		var a flowAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			return fmt.Errorf("flow check into %s: %w", dest, err)
		}
		verdict := "DENIED "
		if a.Allowed {
			verdict = "allowed"
		}
		fmt.Fprintf(w, "  write a summary into %-12s %s (audit %s)\n", dest, verdict, a.AuditID)
		for _, reason := range a.Reasons {
			fmt.Fprintf(w, "   - %s\n", reason) // under four spaces: not a result line
		}
	}
	b, err := json.Marshal(flowBody(r.AuditID, "acme-docs"))
	if err != nil {
		return err
	}
	args, err := json.Marshal(map[string]any{"audit_ids": []string{r.AuditID}, "project": "acme-docs"})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, `
Ask it yourself (TOKEN_ANNE_COPILOT is printed below):

# may a summary of what the copilot read go into acme-docs? (denied, with the reasons)
curl -s %[1]s/v1/flow/check -H "Authorization: Bearer $TOKEN_ANNE_COPILOT" \
  -H 'Content-Type: application/json' -d '%[2]s'
# the same question as the MCP tool check_write
curl -s %[1]s/mcp -H "Authorization: Bearer $TOKEN_ANNE_COPILOT" -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"check_write","arguments":%[3]s}}'
`, base, b, args)
	return nil
}

func flowBody(auditID, project string) map[string]any {
	return map[string]any{"sources": map[string]any{"audit_ids": []string{auditID}}, "destination": map[string]any{"project": project}}
}
