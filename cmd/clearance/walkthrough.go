package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// demoQuery is the query every demo principal asks: both tenants have tickets
// about login timeouts, so tenant isolation is visible at a glance.
const demoQuery = "login timeout"

// demoCase is one principal of the walkthrough.
type demoCase struct {
	Label  string // short name shown in the table
	About  string // who this is in the demo org
	Sub    string
	Tenant string
	Act    string // agent (act.sub), if any
}

// demoCases are the principals of the walkthrough, in the order shown.
var demoCases = []demoCase{
	{Label: "bob", About: "acme tenant admin", Sub: "bob", Tenant: "acme"},
	{Label: "anne", About: "acme project member (web, api)", Sub: "anne", Tenant: "acme"},
	{Label: "anne+copilot", About: "anne's agent, granted acme-web only", Sub: "anne", Tenant: "acme", Act: "copilot"},
	{Label: "anne+mailbot", About: "anne's agent, grant expired", Sub: "anne", Tenant: "acme", Act: "mailbot"},
	{Label: "hank", About: "globex member (other tenant)", Sub: "hank", Tenant: "globex"},
	{Label: "erin", About: "acme member, blocked on WEB-1", Sub: "erin", Tenant: "acme"},
}

// demoBlock is written through POST /v1/relationships before the walkthrough so
// one principal shows a block overriding team membership.
var demoBlock = map[string]any{"writes": []map[string]string{{"user": "user:erin", "relation": "blocked", "object": "ticket:WEB-1"}}}

type demoResult struct {
	Results []struct {
		TicketID string  `json:"ticket_id"`
		Title    string  `json:"title"`
		Score    float64 `json:"score"`
	} `json:"results"`
	Status  string `json:"status"`
	AuditID string `json:"audit_id"`
}

// tokenFunc mints a dev access token.
type tokenFunc func(sub, tenant, act, scope string, ttl time.Duration) (string, error)

// walkthrough asks demoQuery as every demo principal against the running server
// at base and prints what each one got, then ready-to-paste curl commands, each
// after a comment saying what it shows, and the tokens they need (an
// operator's for the audit log too). dataDir is the server's, for more tokens.
func walkthrough(ctx context.Context, w io.Writer, base, dataDir string, mint tokenFunc) error {
	client := &http.Client{Timeout: 30 * time.Second}
	admin, err := mint("operator", "acme", "", "clearance:admin", time.Hour)
	if err != nil {
		return err
	}
	if _, err := postJSON(ctx, client, base+"/v1/relationships", admin, demoBlock); err != nil {
		return fmt.Errorf("demo block: %w", err)
	}

	fmt.Fprintf(w, "\nclearance demo: the same search, %q (top_k 5), as six principals\n\n", demoQuery)
	tokens := map[string]string{}
	for _, c := range demoCases {
		tok, err := mint(c.Sub, c.Tenant, c.Act, "tickets:read", 12*time.Hour)
		if err != nil {
			return err
		}
		tokens[c.Label] = tok
		body, err := postJSON(ctx, client, base+"/v1/search", tok, map[string]any{"query": demoQuery, "top_k": 5})
		if err != nil {
			return fmt.Errorf("search as %s: %w", c.Label, err)
		}
		var r demoResult
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("search as %s: %w", c.Label, err)
		}
		fmt.Fprintf(w, "%-13s %-38s %-9s %d result(s)\n", c.Label, c.About, r.Status, len(r.Results))
		for _, h := range r.Results {
			fmt.Fprintf(w, "    %-10s %s\n", h.TicketID, truncate(h.Title, 58))
		}
		if len(r.Results) == 0 {
			fmt.Fprintf(w, "    (nothing visible)\n")
		}
	}

	if err := flowWalkthrough(ctx, w, client, base, admin, tokens["anne+copilot"]); err != nil {
		return err
	}

	// The operator reads the audit log: every decision above, with what was
	// withheld and why.
	tokens["audit"], err = mint("olga", "acme", "", "clearance:audit", 12*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nTry it yourself (tokens valid 12 h; TOKEN_AUDIT is an operator's, scope clearance:audit):\n\n")
	for _, label := range []string{"anne", "anne+copilot", "audit"} {
		env := "TOKEN_" + strings.ToUpper(strings.ReplaceAll(label, "+", "_"))
		fmt.Fprintf(w, "export %s=%s\n", env, tokens[label])
	}
	fmt.Fprintf(w, `
# anne's own search: her projects (acme-web, acme-api) and the tickets shared with her
curl -s %[1]s/v1/search -H "Authorization: Bearer $TOKEN_ANNE" \
  -H 'Content-Type: application/json' -d '{"query":"login timeout","top_k":5}'
# her copilot's search: only acme-web, the one project anne granted it
curl -s %[1]s/v1/search -H "Authorization: Bearer $TOKEN_ANNE_COPILOT" \
  -H 'Content-Type: application/json' -d '{"query":"checkout safari","top_k":3}'
# a ticket anne may view: the full text
curl -s %[1]s/v1/tickets/WEB-1 -H "Authorization: Bearer $TOKEN_ANNE"
# a ticket anne may not view: 404, exactly as if it did not exist
curl -s %[1]s/v1/tickets/SEC-1 -H "Authorization: Bearer $TOKEN_ANNE"
# the copilot's search again, as an MCP tool call (what an agent framework sends)
curl -s %[1]s/mcp -H "Authorization: Bearer $TOKEN_ANNE_COPILOT" -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_tickets","arguments":{"query":"login timeout","top_k":3}}}'
# the operator's view: the latest decisions, each with what was returned, withheld and why
curl -s '%[1]s/v1/audit?limit=3' -H "Authorization: Bearer $TOKEN_AUDIT"

Audit page: %[1]s/audit (sign in with $TOKEN_AUDIT)
More tokens: clearance token --data-dir %[2]s --sub dave --tenant acme [--act copilot]
MCP (streamable HTTP, tools search_tickets, get_ticket and check_write, same bearer tokens): %[1]s/mcp
Serving on %[1]s; Ctrl-C stops.
`, base, shellQuote(dataDir))
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:,=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func postJSON(ctx context.Context, client *http.Client, url, token string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
