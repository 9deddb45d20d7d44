// Command mcpclient is the MCP client of scripts/newcomer.sh: it connects to a
// clearance /mcp endpoint with the MCP Go SDK's own client (streamable HTTP,
// a bearer token), lists the tools and calls search_tickets, printing what it
// got. It exits non-zero when any step fails or the search finds nothing.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	url := flag.String("url", "", "the MCP endpoint, e.g. http://127.0.0.1:8080/mcp")
	token := flag.String("token", "", "bearer token")
	query := flag.String("query", "login timeout", "search_tickets query")
	flag.Parse()
	if err := run(*url, *token, *query); err != nil {
		fmt.Fprintln(os.Stderr, "mcpclient:", err)
		os.Exit(1)
	}
}

// bearer adds the token to every request of the SDK's transport.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

func run(url, token, query string) error {
	if url == "" || token == "" {
		return errors.New("-url and -token are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "clearance-newcomer", Version: "1"}, nil)
	s, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   url,
		HTTPClient: &http.Client{Transport: bearer(token), Timeout: 30 * time.Second},
		MaxRetries: -1, DisableStandaloneSSE: true,
	}, nil)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer s.Close()
	init := s.InitializeResult()
	fmt.Printf("initialize: server %s %s\n", init.ServerInfo.Name, init.ServerInfo.Version)

	tools, err := s.ListTools(ctx, nil)
	if err != nil {
		return fmt.Errorf("tools/list: %w", err)
	}
	var names []string
	for _, t := range tools.Tools {
		names = append(names, t.Name)
	}
	fmt.Printf("tools/list: %s\n", strings.Join(names, ", "))
	if !strings.Contains(","+strings.Join(names, ",")+",", ",search_tickets,") {
		return errors.New("tools/list: no search_tickets")
	}

	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "search_tickets", Arguments: map[string]any{"query": query, "top_k": 3}})
	if err != nil {
		return fmt.Errorf("tools/call search_tickets: %w", err)
	}
	if res.IsError {
		return fmt.Errorf("tools/call search_tickets: tool error %v", res.Content)
	}
	raw, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return err
	}
	var out struct {
		Results []struct {
			TicketID string `json:"ticket_id"`
		} `json:"results"`
		Status  string `json:"status"`
		AuditID string `json:"audit_id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("tools/call search_tickets: %w", err)
	}
	var ids []string
	for _, r := range out.Results {
		ids = append(ids, r.TicketID)
	}
	fmt.Printf("tools/call search_tickets %q: %s [%s] audit %s\n", query, out.Status, strings.Join(ids, " "), out.AuditID)
	if len(ids) == 0 || out.AuditID == "" {
		return errors.New("tools/call search_tickets: no results or no audit id")
	}
	return nil
}
