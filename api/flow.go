package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
)

// FlowChecker answers "may content derived from these sources go to that
// destination?" (*filter.Flow implements it).
type FlowChecker interface {
	Check(ctx context.Context, p authz.Principal, r filter.FlowRequest) (filter.FlowResponse, error)
}

// FlowAPI serves POST /v1/flow/check (SPEC 13).
type FlowAPI struct {
	Flow FlowChecker
}

// flowRequest is the body of POST /v1/flow/check.
type flowRequest struct {
	Sources     *flowSources     `json:"sources"`
	Destination *flowDestination `json:"destination"`
	Explain     bool             `json:"explain"`
}

type flowSources struct {
	AuditIDs  []string `json:"audit_ids"`
	TicketIDs []string `json:"ticket_ids"`
}

type flowDestination struct {
	Project    string   `json:"project"`
	Ticket     string   `json:"ticket"`
	Principals []string `json:"principals"`
}

// Register adds POST /v1/flow/check to g.
func (f *FlowAPI) Register(g *echo.Group, principal func(echo.Context) (authz.Principal, error)) {
	g.POST("/flow/check", func(c echo.Context) error {
		p, err := principal(c)
		if err != nil {
			return err
		}
		if err := NeedScope(p, ScopeTicketsRead); err != nil {
			return err
		}
		var body flowRequest
		if err := decodeStrict(c.Request().Body, &body); err != nil {
			return err
		}
		explain := body.Explain
		for k, v := range c.QueryParams() {
			if k != "explain" || len(v) != 1 || (v[0] != "true" && v[0] != "false") {
				return clearance.Invalid(k, `the only query parameter is explain=true|false`)
			}
			explain = explain || v[0] == "true"
		}
		if body.Sources == nil {
			return clearance.Invalid("sources", "is required")
		}
		if body.Destination == nil {
			return clearance.Invalid("destination", "is required")
		}
		if f.Flow == nil {
			return fmt.Errorf("flow check: not configured: %w", clearance.ErrUnavailable)
		}
		req := flowRequestOf(p, *body.Sources, *body.Destination, explain, requestID(c))
		resp, err := f.Flow.Check(c.Request().Context(), p, req)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, resp)
	})
}

func flowRequestOf(p authz.Principal, s flowSources, d flowDestination, explain bool, requestID string) filter.FlowRequest {
	return filter.FlowRequest{
		Sources:     filter.FlowSources{AuditIDs: s.AuditIDs, TicketIDs: s.TicketIDs},
		Destination: filter.FlowDestination{Project: d.Project, Ticket: d.Ticket, Principals: d.Principals},
		Explain:     explain,
		Operator:    p.HasScope(ScopeAudit),
		RequestID:   requestID,
	}
}

// flowInstructions is added to the MCP server's instructions when check_write
// is offered.
const flowInstructions = ` Before you write anything derived from what these tools returned (a new ticket, a comment, a document, a message, an email), ` +
	`call check_write with the audit_ids of the answers you used and the place you will write to, and follow its answer.`

const checkWriteDescription = `Ask before you write. Call this BEFORE writing anything derived from search_tickets or get_ticket results ` +
	`(a summary, a new ticket, a comment, a page, a chat message or an email) to a project, a ticket or a list of people. ` +
	`Pass the audit_id of every answer you used (and/or the ticket_ids you used) and exactly one destination: ` +
	`project (a project id), ticket (a ticket id) or principals (recipients as "user:<id>" or "service_account:<id>"). ` +
	`It answers allowed true only if everyone who can read the destination may also read every source right now. ` +
	`If allowed is false, do NOT write there, not even a paraphrase or a partial summary: ` +
	`write to a narrower place whose audience can read every source (check it again first), leave the restricted sources out and check again, ` +
	`or tell the user what the reasons say and ask how to proceed. Never work around a denial.`

// CheckWriteInput is the argument of check_write.
type CheckWriteInput struct {
	AuditIDs   []string `json:"audit_ids,omitempty" jsonschema:"audit_id values of the search_tickets / get_ticket answers whose content you will use"`
	TicketIDs  []string `json:"ticket_ids,omitempty" jsonschema:"ids of tickets whose content you will use (alternative or addition to audit_ids)"`
	Project    string   `json:"project,omitempty" jsonschema:"destination: the project id you will write into"`
	Ticket     string   `json:"ticket,omitempty" jsonschema:"destination: the ticket id you will write to (e.g. a comment)"`
	Principals []string `json:"principals,omitempty" jsonschema:"destination: recipients, each user:<id> or service_account:<id>"`
}

// checkWrite is the MCP tool check_write: the flow check for the request's
// verified principal, with the same rules as POST /v1/flow/check.
func (t mcpTools) checkWrite(ctx context.Context, creq *mcp.CallToolRequest, in CheckWriteInput) (*mcp.CallToolResult, filter.FlowResponse, error) {
	c, err := caller(creq)
	if err != nil {
		return nil, filter.FlowResponse{}, t.toolError(c, err)
	}
	req := flowRequestOf(c.p, flowSources{AuditIDs: in.AuditIDs, TicketIDs: in.TicketIDs},
		flowDestination{Project: in.Project, Ticket: in.Ticket, Principals: in.Principals}, false, c.requestID)
	resp, err := t.m.Flow.Check(ctx, c.p, req)
	if err != nil {
		return nil, filter.FlowResponse{}, t.toolError(c, err)
	}
	verdict := "ALLOWED: you may write there."
	if !resp.Allowed {
		verdict = "DENIED: do not write there."
	}
	text := fmt.Sprintf("%s %s (audit %s)", verdict, strings.Join(resp.Reasons, "; "), resp.AuditID)
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, resp, nil
}
