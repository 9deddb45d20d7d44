package api

import (
	"context"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/indexer"
)

// Search request limits (SPEC 9). MaxTopK is configurable per server.
const (
	MaxQueryChars     = 4096
	DefaultTopK       = 10
	DefaultMaxTopK    = 100
	maxIntentChars    = 1024
	maxFilterProjects = 1000
)

// searchRequest is the body of POST /v1/search.
type searchRequest struct {
	Query         string         `json:"query"`
	TopK          *int           `json:"top_k"`
	Filters       *searchFilters `json:"filters"`
	Intent        *searchIntent  `json:"intent"`
	GroupByTicket bool           `json:"group_by_ticket"`
	// Mode is "hybrid", "vector" or "lexical"; empty is the server's default.
	Mode string `json:"mode"`
}

type searchFilters struct {
	Projects []string `json:"projects"`
}

type searchIntent struct {
	Description string   `json:"description"`
	Projects    []string `json:"projects"`
}

// validate checks the request and returns top_k with its default applied.
func (r *searchRequest) validate(maxTopK int) (int, error) {
	n := utf8.RuneCountInString(r.Query)
	switch {
	case !utf8.ValidString(r.Query):
		return 0, clearance.Invalid("query", "is not valid UTF-8")
	case n == 0:
		return 0, clearance.Invalid("query", "is required (1 to %d characters)", MaxQueryChars)
	case n > MaxQueryChars:
		return 0, clearance.Invalid("query", "is %d characters long; the limit is %d", n, MaxQueryChars)
	}
	if _, ok := filter.ParseMode(r.Mode); !ok {
		return 0, clearance.Invalid("mode", "must be one of hybrid, vector, lexical")
	}
	k := DefaultTopK
	if r.TopK != nil {
		k = *r.TopK
		if k < 1 || k > maxTopK {
			return 0, clearance.Invalid("top_k", "must be between 1 and %d", maxTopK)
		}
	}
	if r.Filters != nil {
		if err := validProjects("filters.projects", r.Filters.Projects); err != nil {
			return 0, err
		}
	}
	if r.Intent != nil {
		if c := utf8.RuneCountInString(r.Intent.Description); c > maxIntentChars || !utf8.ValidString(r.Intent.Description) {
			return 0, clearance.Invalid("intent.description", "must be valid UTF-8 of at most %d characters", maxIntentChars)
		}
		if err := validProjects("intent.projects", r.Intent.Projects); err != nil {
			return 0, err
		}
	}
	return k, nil
}

func validProjects(field string, ps []string) error {
	if len(ps) > maxFilterProjects {
		return clearance.Invalid(field, "names more than %d projects", maxFilterProjects)
	}
	for i, p := range ps {
		if !indexer.ValidID(p) {
			return clearance.Invalid(fmt.Sprintf("%s[%d]", field, i), "is not a valid project id")
		}
	}
	return nil
}

// Planner is the filtered read path (package filter): pre-filter, store search,
// post-filter, audit record.
type Planner interface {
	Search(ctx context.Context, p authz.Principal, r filter.Request) (filter.Response, error)
	Get(ctx context.Context, p authz.Principal, id string) (filter.TicketResponse, error)
}

// SearchAPI serves the search side of the API: POST /v1/search, GET, POST and
// DELETE /v1/tickets, POST /v1/relationships.
type SearchAPI struct {
	Planner Planner
	Tickets *TicketWriter
	// Relationships is the engine tuples are written to; nil when the engine's
	// tuples are owned elsewhere (remote OpenFGA), which answers 409.
	Relationships authz.Engine
	// MaxTopK bounds top_k (default DefaultMaxTopK).
	MaxTopK int
}

// Register adds the endpoints to g (the /v1 group behind the authentication
// middleware). principal returns the verified principal that middleware stored.
// Errors go to the server's error table.
func (s *SearchAPI) Register(g *echo.Group, principal func(echo.Context) (authz.Principal, error)) {
	with := func(h func(echo.Context, authz.Principal) error) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, err := principal(c)
			if err != nil {
				return err
			}
			return h(c, p)
		}
	}
	g.POST("/search", with(s.search))
	g.GET("/tickets/:id", with(s.getTicket))
	g.POST("/tickets", with(s.postTickets))
	g.DELETE("/tickets/:id", with(s.deleteTicket))
	g.POST("/relationships", with(s.postRelationships))
}

func (s *SearchAPI) maxTopK() int {
	if s.MaxTopK > 0 {
		return s.MaxTopK
	}
	return DefaultMaxTopK
}

func (s *SearchAPI) search(c echo.Context, p authz.Principal) error {
	if err := NeedScope(p, ScopeTicketsRead); err != nil {
		return err
	}
	var req searchRequest
	if err := decodeStrict(c.Request().Body, &req); err != nil {
		return err
	}
	k, err := req.validate(s.maxTopK())
	if err != nil {
		return err
	}
	fr := filter.Request{Query: req.Query, TopK: k, GroupByTicket: req.GroupByTicket, RequestID: requestID(c), Mode: filter.Mode(req.Mode)}
	if req.Filters != nil {
		fr.Filters.Projects = req.Filters.Projects
	}
	if req.Intent != nil {
		fr.Intent = filter.Intent{Description: req.Intent.Description, Projects: req.Intent.Projects}
	}
	resp, err := s.Planner.Search(c.Request().Context(), p, fr)
	if err != nil {
		return err
	}
	if resp.Results == nil {
		resp.Results = []filter.Result{}
	}
	return c.JSON(http.StatusOK, resp)
}

// ticketResponse is the body of GET /v1/tickets/{id}.
type ticketResponse struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Project   string    `json:"project"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	UpdatedAt time.Time `json:"updated_at"`
	AuditID   string    `json:"audit_id"`
}

func (s *SearchAPI) getTicket(c echo.Context, p authz.Principal) error {
	if err := NeedScope(p, ScopeTicketsRead); err != nil {
		return err
	}
	id := c.Param("id")
	if !indexer.ValidID(id) {
		// Same answer as an invisible or missing ticket.
		return fmt.Errorf("ticket: %w", clearance.ErrNotFound)
	}
	r, err := s.Planner.Get(c.Request().Context(), p, id)
	if err != nil {
		return err
	}
	t := r.Ticket
	return c.JSON(http.StatusOK, ticketResponse{ID: t.ID, Tenant: t.Tenant, Project: t.Project, Title: t.Title,
		Body: t.Body, UpdatedAt: t.UpdatedAt, AuditID: r.AuditID})
}

// requestID is the id the request-id middleware gave this request.
func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}
