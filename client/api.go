package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// SearchRequest is the body of POST /v1/search.
type SearchRequest struct {
	Query string `json:"query"`
	// TopK defaults to the server's 10 when zero.
	TopK int `json:"top_k,omitempty"`
	// Projects keeps only results of these projects (a filter, not a grant).
	Projects []string `json:"-"`
	// Intent narrows the search to what the agent says it needs (audited).
	Intent        *Intent `json:"intent,omitempty"`
	GroupByTicket bool    `json:"group_by_ticket,omitempty"`
	// Mode is "hybrid", "vector" or "lexical" (ModeHybrid, ...); empty uses the
	// server's default.
	Mode string `json:"mode,omitempty"`
}

// Search modes of SearchRequest.Mode.
const (
	ModeHybrid  = "hybrid"
	ModeVector  = "vector"
	ModeLexical = "lexical"
)

// Intent is the agent's stated purpose of a search.
type Intent struct {
	Description string   `json:"description,omitempty"`
	Projects    []string `json:"projects,omitempty"`
}

// SearchResult is one chunk the caller may view.
type SearchResult struct {
	TicketID  string  `json:"ticket_id"`
	ProjectID string  `json:"project_id"`
	TenantID  string  `json:"tenant_id"`
	Title     string  `json:"title"`
	Snippet   string  `json:"snippet"`
	Chunk     int     `json:"chunk"`
	Score     float32 `json:"score"`
}

// SearchResponse is the answer of a search.
type SearchResponse struct {
	Results []SearchResult `json:"results"`
	// Status is "complete", "exhausted" (fewer visible results than asked for)
	// or "partial" (the search deadline cut the check short).
	Status string `json:"status"`
	// Exact is false when a store page of the answer came from an approximate
	// plan (an HNSW walk): every result is visible, but they may not be the
	// closest visible ones.
	Exact   bool   `json:"exact"`
	AuditID string `json:"audit_id"`
}

// Search returns the tickets the caller may view that match the query.
func (c *Client) Search(ctx context.Context, r SearchRequest) (*SearchResponse, error) {
	body := struct {
		SearchRequest
		Filters *struct {
			Projects []string `json:"projects"`
		} `json:"filters,omitempty"`
	}{SearchRequest: r}
	if len(r.Projects) > 0 {
		body.Filters = &struct {
			Projects []string `json:"projects"`
		}{r.Projects}
	}
	var out SearchResponse
	if err := c.do(ctx, http.MethodPost, "/v1/search", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Ticket is a ticket as the API reads and writes it.
type Ticket struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Project   string    `json:"project"`
	Title     string    `json:"title,omitempty"`
	Body      string    `json:"body,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Deleted, in an upsert, removes the ticket instead.
	Deleted bool `json:"deleted,omitempty"`
	// AuditID is set on reads: the audit record of this access.
	AuditID string `json:"audit_id,omitempty"`
}

// Ticket reads one ticket. A ticket the caller may not view is
// clearance.ErrNotFound, exactly like a missing one.
func (c *Client) Ticket(ctx context.Context, id string) (*Ticket, error) {
	var t Ticket
	if err := c.do(ctx, http.MethodGet, "/v1/tickets/"+url.PathEscape(id), nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// UpsertResult is the server's account of one POST /v1/tickets.
type UpsertResult struct {
	Received  int `json:"received"`
	Indexed   int `json:"indexed"`
	Unchanged int `json:"unchanged"`
	Moved     int `json:"moved"`
	Deleted   int `json:"deleted"`
	Chunks    int `json:"chunks"`
}

// UpsertTickets indexes (or, with Deleted, removes) at most MaxTicketsPerCall
// tickets in one all-or-nothing call (scope clearance:index).
func (c *Client) UpsertTickets(ctx context.Context, tickets []Ticket) (*UpsertResult, error) {
	if len(tickets) > MaxTicketsPerCall {
		return nil, fmt.Errorf("UpsertTickets: %d tickets in one call; the limit is %d", len(tickets), MaxTicketsPerCall)
	}
	for i := range tickets {
		tickets[i].AuditID = ""
	}
	var out UpsertResult
	if err := c.do(ctx, http.MethodPost, "/v1/tickets", nil, map[string]any{"tickets": tickets}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpsertRaw is UpsertTickets for callers that already hold the tickets as JSON
// objects (the CLI's push keeps its own row type).
func (c *Client) UpsertRaw(ctx context.Context, tickets any) (*UpsertResult, error) {
	var out UpsertResult
	if err := c.do(ctx, http.MethodPost, "/v1/tickets", nil, map[string]any{"tickets": tickets}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteTicket removes a ticket from the index (a missing one is not an error).
func (c *Client) DeleteTicket(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tickets/"+url.PathEscape(id), nil, nil, nil)
}

// Condition names a condition of the model and the parameters stored with a
// tuple.
type Condition struct {
	Name    string         `json:"name"`
	Context map[string]any `json:"context,omitempty"`
}

// Tuple is one relationship: User has Relation on Object.
type Tuple struct {
	User      string     `json:"user"`
	Relation  string     `json:"relation"`
	Object    string     `json:"object"`
	Condition *Condition `json:"condition,omitempty"`
}

// RelationshipsResult says what one call applied.
type RelationshipsResult struct {
	Written int `json:"written"`
	Deleted int `json:"deleted"`
}

// WriteRelationships writes and deletes tuples in one transaction (scope
// clearance:admin; at most MaxTuplesPerCall in all). A tuple that does not fit
// the model fails the call with clearance.ErrInvalid and writes nothing.
func (c *Client) WriteRelationships(ctx context.Context, writes, deletes []Tuple) (*RelationshipsResult, error) {
	if n := len(writes) + len(deletes); n > MaxTuplesPerCall {
		return nil, fmt.Errorf("WriteRelationships: %d tuples in one call; the limit is %d", n, MaxTuplesPerCall)
	}
	body := struct {
		Writes  []Tuple `json:"writes,omitempty"`
		Deletes []Tuple `json:"deletes,omitempty"`
	}{writes, deletes}
	var out RelationshipsResult
	if err := c.do(ctx, http.MethodPost, "/v1/relationships", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Grant lets an agent read a project for a user.
type Grant struct {
	User      string     `json:"user"`
	Agent     string     `json:"agent"`
	Project   string     `json:"project"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// GrantRequest is the body of POST /v1/grants.
type GrantRequest struct {
	Agent     string     `json:"agent"`
	Projects  []string   `json:"projects"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// CreateGrants lets an agent read some of the caller's projects (user tokens
// only).
func (c *Client) CreateGrants(ctx context.Context, r GrantRequest) ([]Grant, error) {
	var out struct {
		Grants []Grant `json:"grants"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/grants", nil, r, &out); err != nil {
		return nil, err
	}
	return out.Grants, nil
}

// ListGrants lists the caller's grants, or user's (tenant admins, operators)
// when user is not empty.
func (c *Client) ListGrants(ctx context.Context, user string) ([]Grant, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	var out struct {
		Grants []Grant `json:"grants"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/grants", q, nil, &out); err != nil {
		return nil, err
	}
	return out.Grants, nil
}

// RevokeGrants revokes an agent's grants (only project's when not empty; user's
// when not empty) and returns what was revoked.
func (c *Client) RevokeGrants(ctx context.Context, agent, project, user string) ([]Grant, error) {
	q := url.Values{}
	if project != "" {
		q.Set("project", project)
	}
	if user != "" {
		q.Set("user", user)
	}
	var out struct {
		Revoked []Grant `json:"revoked"`
	}
	if err := c.do(ctx, http.MethodDelete, "/v1/grants/"+url.PathEscape(agent), q, nil, &out); err != nil {
		return nil, err
	}
	return out.Revoked, nil
}

// FlowRequest asks whether content derived from Sources may be written to
// Destination (POST /v1/flow/check).
type FlowRequest struct {
	Sources     FlowSources     `json:"sources"`
	Destination FlowDestination `json:"destination"`
	// Explain asks for the excluded principals by name (tenant admins and
	// operators only).
	Explain bool `json:"explain,omitempty"`
}

// FlowSources are the caller's earlier answers (audit ids) and tickets it may
// view.
type FlowSources struct {
	AuditIDs  []string `json:"audit_ids,omitempty"`
	TicketIDs []string `json:"ticket_ids,omitempty"`
}

// FlowDestination is where the content would go: a project, a ticket, or
// recipients ("user:<id>", "service_account:<id>").
type FlowDestination struct {
	Project    string   `json:"project,omitempty"`
	Ticket     string   `json:"ticket,omitempty"`
	Principals []string `json:"principals,omitempty"`
}

// FlowExcluded is one principal who can view the destination but not every
// source (explained answers only).
type FlowExcluded struct {
	Principal  string   `json:"principal"`
	CannotView int      `json:"cannot_view"`
	Tickets    []string `json:"tickets,omitempty"`
}

// FlowResponse is the flow check's answer; Allowed false means do not write.
type FlowResponse struct {
	Allowed   bool           `json:"allowed"`
	Reasons   []string       `json:"reasons"`
	AuditID   string         `json:"audit_id"`
	Audience  int            `json:"audience"`
	Excluded  int            `json:"excluded"`
	Sources   int            `json:"sources"`
	Names     []FlowExcluded `json:"excluded_principals,omitempty"`
	MoreNames int            `json:"more_excluded_principals,omitempty"`
}

// FlowCheck asks, before a write, whether everyone who can view the
// destination can view every source (scope tickets:read).
func (c *Client) FlowCheck(ctx context.Context, r FlowRequest) (*FlowResponse, error) {
	var out FlowResponse
	if err := c.do(ctx, http.MethodPost, "/v1/flow/check", nil, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
