package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/labstack/echo/v4"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/internal/strictjson"
)

// MCPPath is where the MCP endpoint is mounted.
const MCPPath = "/mcp"

// Audit record kinds of MCP calls.
const (
	KindMCPSearch = "mcp_search"
	KindMCPTicket = "mcp_ticket"
)

// MCPPlanner is the read path the MCP tools call: the same planner as
// POST /v1/search and GET /v1/tickets, with the audit kind of ticket reads
// settable (*filter.Planner implements it).
type MCPPlanner interface {
	Search(ctx context.Context, p authz.Principal, r filter.Request) (filter.Response, error)
	GetKind(ctx context.Context, p authz.Principal, id, kind string) (filter.TicketResponse, error)
}

// MCP serves the Model Context Protocol (streamable HTTP, stateless) at /mcp
// with the tools search_tickets and get_ticket. Every HTTP request carries its
// bearer token and passes the server's authentication middleware; the tools
// act for that request's verified principal only, never for anything in the
// tool arguments.
type MCP struct {
	Planner MCPPlanner
	// Flow, when set, adds the tool check_write (the flow check, SPEC 13).
	Flow FlowChecker
	// MaxTopK bounds top_k (default DefaultMaxTopK), as on /v1/search.
	MaxTopK int
	// Version is reported to clients in the initialize answer.
	Version string
}

// Mount adds /mcp to s behind s's authentication middleware (the /v1 one).
func (m *MCP) Mount(s *Server) {
	srv := m.server(s.log)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{
		// Stateless: no session to hijack, and every request is authenticated
		// on its own.
		Stateless:    true,
		JSONResponse: true,
		Logger:       s.log,
		// The SDK refuses localhost connections with a foreign Host header to
		// stop DNS rebinding. Every request here needs a bearer token in a
		// header, which a rebinding page cannot have, while a reverse proxy on
		// the same host forwarding the public Host header is common.
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        s.cfg.BodyLimit,
	})
	// The SDK hands a request's auth.TokenInfo to tool handlers
	// (CallToolRequest.Extra.TokenInfo), and only its bearer middleware can put
	// one on the request. Its "verifier" here checks nothing: it hands over the
	// principal our middleware already verified for this very request.
	handover := auth.RequireBearerToken(func(_ context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		c, ok := r.Context().Value(mcpCallerKey{}).(mcpCaller)
		if !ok {
			return nil, auth.ErrInvalidToken // unreachable behind the middleware
		}
		// No Expiration: our verifier has checked it (with its skew), and a
		// second check here would answer outside the error table.
		return &auth.TokenInfo{Scopes: c.p.Scopes, UserID: c.p.String(), Extra: map[string]any{mcpCallerExtra: c}}, nil
	}, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(h)
	s.e.Any(MCPPath, func(c echo.Context) error {
		p, err := PrincipalFrom(c)
		if err != nil {
			return err
		}
		// Both tools read tickets: one scope for the whole endpoint, answered
		// at the HTTP level (403 insufficient_scope) like /v1/search.
		if err := NeedScope(p, ScopeTicketsRead); err != nil {
			return err
		}
		r := c.Request()
		if err := strictBody(r); err != nil {
			return err
		}
		ctx := r.Context()
		if r.Method == http.MethodPost {
			body, call, err := readMCPMessage(r.Body)
			if err != nil {
				if errors.Is(err, clearance.ErrInvalid) {
					return writeRPCError(c, err)
				}
				return err
			}
			if call {
				// A tool call is a search or a ticket read: the same rate limit,
				// slot and deadline as on /v1.
				var release func()
				if ctx, release, err = s.adm.admit(ctx, p); err != nil {
					return err
				}
				defer release()
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		r = r.Clone(context.WithValue(ctx, mcpCallerKey{}, mcpCaller{p: p, requestID: requestID(c), ctx: ctx}))
		// The credential stops here: the SDK (and the tools, which see the
		// request headers) get a placeholder the handover accepts, also when
		// the credential came as X-API-Key.
		r.Header.Set(echo.HeaderAuthorization, "Bearer "+mcpVerified)
		r.Header.Del(headerAPIKey)
		handover.ServeHTTP(c.Response(), r)
		return nil
	}, s.authenticate)
}

// strictBody holds a JSON-RPC body to the rules of decodeStrict before the SDK
// reads it: the SDK's decoder replaces invalid UTF-8 with U+FFFD and lets the
// last of duplicate members win, so a tool argument could say one thing to a
// validator and another to a decoder. Names are matched exactly by the SDK and
// unknown tool arguments refused by the tools' input schemas. The body is read
// whole (it is bounded by the body limit) and handed on unchanged.
func strictBody(r *http.Request) error {
	if r.Method != http.MethodPost || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	body, err := readBody(r.Body)
	if err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(bytes.TrimSpace(body)) == 0 {
		return nil // the SDK answers an empty body itself
	}
	if err := strictjson.Check(body); err != nil {
		return fieldError(err, "")
	}
	return nil
}

type mcpCallerKey struct{}

const (
	mcpCallerExtra = "clearance.caller"
	// mcpVerified replaces the credential on requests handed to the SDK.
	mcpVerified = "verified-by-clearance"
)

// mcpCaller is the verified principal of one HTTP request to /mcp.
type mcpCaller struct {
	p         authz.Principal
	requestID string
	// ctx is the HTTP request's context: its deadline and cancellation bound
	// the tool call, whatever context the SDK hands the tool.
	ctx context.Context
}

// bound returns ctx limited by the HTTP request's deadline and ended with it.
func (c mcpCaller) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.ctx == nil {
		return context.WithCancel(ctx)
	}
	var cancelDeadline context.CancelFunc = func() {}
	if d, ok := c.ctx.Deadline(); ok {
		ctx, cancelDeadline = context.WithDeadline(ctx, d)
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		cancelDeadline()
	}
}

// readMCPMessage reads one POST body (bounded by the server's body limit) and
// reports whether it is a tools/call. A JSON-RPC batch is refused before
// anything in it runs: MCP 2025-06-18 removed batching, and the SDK still
// runs a batch's calls concurrently for older protocol versions, so one
// request of 300 searches exhausted the process (issue 14).
func readMCPMessage(body io.Reader) ([]byte, bool, error) {
	b, err := readBody(body)
	if err != nil {
		return nil, false, err
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		return nil, false, clearance.Invalid("body", "JSON-RPC batches are not supported (removed in MCP 2025-06-18): send one message per request")
	}
	return b, mayCallTool(b), nil
}

// mayCallTool reports whether a message may be a tools/call, and so must be
// admitted. Only a JSON object with exactly one member named "method" (exact
// case) whose value is another method is not: encoding/json matches names
// case-insensitively and keeps the last duplicate, and a reader that differs
// from the SDK's on either would let a call pass unadmitted.
func mayCallTool(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return true // not an object: the SDK refuses it, admitted or not
	}
	var methods []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return true
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return true
		}
		if strings.EqualFold(key, "method") {
			var m string
			if key != "method" || json.Unmarshal(v, &m) != nil {
				return true
			}
			methods = append(methods, m)
		}
	}
	return len(methods) != 1 || methods[0] == "tools/call"
}

// writeRPCError answers an MCP request the SDK never saw with one JSON-RPC
// error (id null: the request's id is not trusted) and the error table's status.
func writeRPCError(c echo.Context, err error) error {
	msg := problemFor(err).Detail
	var fe *clearance.FieldError
	if errors.As(err, &fe) {
		msg = fe.Reason
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(Status(err), map[string]any{
		"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": rpcInvalidRequest, "message": msg},
	})
}

// rpcInvalidRequest is JSON-RPC 2.0's "Invalid Request" error code.
const rpcInvalidRequest = -32600

// caller is the verified principal of the HTTP request that carried req. Without
// one the call is refused: fail closed.
func caller(req *mcp.CallToolRequest) (mcpCaller, error) {
	if req != nil && req.Extra != nil && req.Extra.TokenInfo != nil {
		if c, ok := req.Extra.TokenInfo.Extra[mcpCallerExtra].(mcpCaller); ok {
			return c, nil
		}
	}
	return mcpCaller{}, fmt.Errorf("mcp: no verified principal: %w", clearance.ErrUnauthenticated)
}

const mcpInstructions = `clearance searches a company's support and engineering tickets on behalf of the user who authorised you. ` +
	`Every result has already been filtered to what that user (and you, as their agent) may see right now: ` +
	`never try to work around a missing ticket, and do not tell the user a ticket exists unless a tool returned it. ` +
	`Use search_tickets to find tickets, then get_ticket with a ticket_id for the full text.`

const searchDescription = `Search over the tickets the current user may see (results are already permission-filtered; nothing else exists for you), ` +
	`by meaning and by exact terms (ticket keys, error codes, versions, names) fused, unless mode says otherwise. ` +
	`Returns the best-matching chunks, best first: ticket_id, project_id, tenant_id, title, a snippet of the matching text, the chunk number and a score (higher is better). ` +
	`status says whether the list is "complete" (top_k results found), "exhausted" (fewer visible matches exist: all were returned) ` +
	`or "partial" (the search budget ran out, or exact is false because the index answered approximately; retry with a narrower query or projects to find more). ` +
	`Several results can come from one ticket. Snippets are short: call get_ticket with a ticket_id for the full text. ` +
	`audit_id identifies the audit record of this search.`

const getDescription = `Fetch one ticket by id (a ticket_id from search_tickets): tenant, project, title, full body, last update and the audit_id of the read. ` +
	`A ticket the user may not see answers exactly like one that does not exist: "ticket not found".`

// SearchTicketsInput is the argument of search_tickets.
type SearchTicketsInput struct {
	Query    string   `json:"query" jsonschema:"what to look for: a question or keywords (1 to 4096 characters)"`
	TopK     int      `json:"top_k,omitempty" jsonschema:"how many results to return (default 10; at most 100 unless the server says otherwise)"`
	Projects []string `json:"projects,omitempty" jsonschema:"only search these project ids (e.g. acme-web); omit to search every project you may see"`
	Intent   string   `json:"intent,omitempty" jsonschema:"one sentence on why you are searching (recorded in the audit log; at most 1024 characters)"`
	Mode     string   `json:"mode,omitempty" jsonschema:"how to rank: hybrid (exact terms and meaning, fused), lexical (exact terms only: ticket keys, error codes, versions, names) or vector (meaning only); omit for the server's default"`
}

// GetTicketInput is the argument of get_ticket.
type GetTicketInput struct {
	ID string `json:"id" jsonschema:"the ticket id, e.g. WEB-1 (the ticket_id of a search result)"`
}

// server builds the MCP server shared by all requests; each tool call acts for
// the principal of the HTTP request that carried it.
func (m *MCP) server(log *slog.Logger) *mcp.Server {
	instructions := mcpInstructions
	if m.Flow != nil {
		instructions += flowInstructions
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "clearance", Title: "clearance ticket search", Version: m.Version},
		&mcp.ServerOptions{Instructions: instructions, Logger: log})
	t := mcpTools{m: m, log: log}
	closed := false
	mcp.AddTool(srv, &mcp.Tool{
		Name: "search_tickets", Title: "Search tickets", Description: searchDescription,
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: &closed},
		InputSchema: inputSchema[SearchTicketsInput](),
	}, t.search)
	mcp.AddTool(srv, &mcp.Tool{
		Name: "get_ticket", Title: "Get ticket", Description: getDescription,
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: &closed},
	}, t.get)
	if m.Flow != nil {
		// Read-only: it writes nothing but its audit record, and asking twice
		// gives the answer for that moment.
		mcp.AddTool(srv, &mcp.Tool{
			Name: "check_write", Title: "Check before writing", Description: checkWriteDescription,
			Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &closed},
			InputSchema: inputSchema[CheckWriteInput](),
		}, t.checkWrite)
	}
	return srv
}

// inputSchema is the SDK's schema inferred from T, except that an optional
// list is typed "array", not ["null","array"] (as inferred for a Go slice):
// some tool-schema consumers reject type lists, and null means nothing here
// that leaving the argument out does not.
func inputSchema[T any]() *jsonschema.Schema {
	s, err := jsonschema.For[T](nil)
	if err != nil {
		panic(fmt.Sprintf("mcp input schema of %T: %v", *new(T), err)) // a programming error, caught by every test
	}
	for _, p := range s.Properties {
		if slices.Equal(p.Types, []string{"null", "array"}) {
			p.Types, p.Type = nil, "array"
		}
	}
	return s
}

type mcpTools struct {
	m   *MCP
	log *slog.Logger
}

func (t mcpTools) maxTopK() int {
	if t.m.MaxTopK > 0 {
		return t.m.MaxTopK
	}
	return DefaultMaxTopK
}

func (t mcpTools) search(ctx context.Context, creq *mcp.CallToolRequest, in SearchTicketsInput) (*mcp.CallToolResult, filter.Response, error) {
	c, err := caller(creq)
	if err != nil {
		return nil, filter.Response{}, t.toolError(c, err)
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	// The same validation as POST /v1/search.
	req := searchRequest{Query: in.Query, Mode: in.Mode}
	if in.TopK != 0 {
		req.TopK = &in.TopK
	}
	if len(in.Projects) > 0 {
		req.Filters = &searchFilters{Projects: in.Projects}
	}
	if in.Intent != "" {
		req.Intent = &searchIntent{Description: in.Intent}
	}
	k, err := req.validate(t.maxTopK())
	if err != nil {
		return nil, filter.Response{}, t.toolError(c, err)
	}
	resp, err := t.m.Planner.Search(ctx, c.p, filter.Request{Query: req.Query, TopK: k,
		Filters: filter.Filters{Projects: in.Projects}, Intent: filter.Intent{Description: in.Intent},
		RequestID: c.requestID, Kind: KindMCPSearch, Mode: filter.Mode(in.Mode)})
	if err != nil {
		return nil, filter.Response{}, t.toolError(c, err)
	}
	if resp.Results == nil {
		resp.Results = []filter.Result{}
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: searchText(resp)}}}, resp, nil
}

// searchText is the short text form of a search answer, for clients that do
// not read structured content.
func searchText(r filter.Response) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d results, status %s", len(r.Results), r.Status)
	if !r.Exact {
		b.WriteString(", approximate")
	}
	fmt.Fprintf(&b, " (audit %s)", r.AuditID)
	for _, h := range r.Results {
		fmt.Fprintf(&b, "\n- %s [%s] %s (score %.3f): %s", h.TicketID, h.ProjectID, h.Title, h.Score, h.Snippet)
	}
	return b.String()
}

func (t mcpTools) get(ctx context.Context, creq *mcp.CallToolRequest, in GetTicketInput) (*mcp.CallToolResult, ticketResponse, error) {
	c, err := caller(creq)
	if err != nil {
		return nil, ticketResponse{}, t.toolError(c, err)
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if !indexer.ValidID(in.ID) {
		// Same answer as an invisible or missing ticket, as on GET /v1/tickets.
		return nil, ticketResponse{}, errTicketNotFound
	}
	r, err := t.m.Planner.GetKind(ctx, c.p, in.ID, KindMCPTicket)
	if err != nil {
		return nil, ticketResponse{}, t.toolError(c, err)
	}
	tk := r.Ticket
	out := ticketResponse{ID: tk.ID, Tenant: tk.Tenant, Project: tk.Project, Title: tk.Title,
		Body: tk.Body, UpdatedAt: tk.UpdatedAt, AuditID: r.AuditID}
	text := fmt.Sprintf("%s [%s] %s\n\n%s", out.ID, out.Project, out.Title, out.Body)
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, out, nil
}

var errTicketNotFound = errors.New("ticket not found")

// toolError turns a planner or validation error into the tool error the model
// sees: the error table's public detail, never internal text; not-found is one
// fixed message whether the ticket is missing or invisible.
func (t mcpTools) toolError(c mcpCaller, err error) error {
	if errors.Is(err, clearance.ErrNotFound) {
		return errTicketNotFound
	}
	p := problemFor(err)
	switch {
	case p.Status >= 500:
		t.log.Error("mcp: tool failed", "request_id", c.requestID, "status", p.Status, "err", err)
	case p.Status == http.StatusUnauthorized || p.Status == http.StatusForbidden:
		t.log.Info("mcp: tool refused", "request_id", c.requestID, "status", p.Status, "err", err)
	}
	msg := p.Detail
	for _, f := range p.Errors {
		msg += fmt.Sprintf(": %s %s", f.Field, f.Reason)
	}
	return errors.New(msg)
}
