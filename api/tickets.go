package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/indexer"
)

// ticketsRequest is the body of POST /v1/tickets.
type ticketsRequest struct {
	// Rows are decoded one by one so an error names tickets[i].field.
	Tickets []json.RawMessage `json:"tickets"`
}

// ticketsResponse counts what a push did.
type ticketsResponse struct {
	Received  int `json:"received"`
	Indexed   int `json:"indexed"`
	Unchanged int `json:"unchanged"`
	Moved     int `json:"moved"`
	Deleted   int `json:"deleted"`
	Chunks    int `json:"chunks"`
}

// maxTicketsPerRequest caps one batch; the body limit usually binds first.
const maxTicketsPerRequest = 1000

func (s *SearchAPI) postTickets(c echo.Context, p authz.Principal) error {
	if err := NeedScope(p, ScopeIndex, ScopeAdmin); err != nil {
		return err
	}
	var req ticketsRequest
	if err := decodeStrict(c.Request().Body, &req); err != nil {
		return err
	}
	switch {
	case len(req.Tickets) == 0:
		return clearance.Invalid("tickets", "is empty")
	case len(req.Tickets) > maxTicketsPerRequest:
		return clearance.Invalid("tickets", "holds %d tickets; the limit is %d per request", len(req.Tickets), maxTicketsPerRequest)
	}
	rows := make([]indexer.Row, len(req.Tickets))
	for i, raw := range req.Tickets {
		r, err := indexer.DecodeRow(raw, fmt.Sprintf("tickets[%d]", i))
		if err != nil {
			return err
		}
		rows[i] = r
	}
	sum, err := s.Tickets.Apply(c.Request().Context(), p, rows)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ticketsResponse{
		Received: len(req.Tickets), Indexed: sum.Embedded, Unchanged: sum.Unchanged,
		Moved: sum.Moved, Deleted: sum.Deleted, Chunks: sum.Chunks,
	})
}

func (s *SearchAPI) deleteTicket(c echo.Context, p authz.Principal) error {
	if err := NeedScope(p, ScopeIndex, ScopeAdmin); err != nil {
		return err
	}
	if err := s.Tickets.Delete(c.Request().Context(), p, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *SearchAPI) postRelationships(c echo.Context, p authz.Principal) error {
	if err := NeedScope(p, ScopeAdmin); err != nil {
		return err
	}
	if s.Relationships == nil {
		return fmt.Errorf("relationships are written to the remote OpenFGA server directly, not through clearance: %w", clearance.ErrConflict)
	}
	var req relationshipsRequest
	if err := decodeStrict(c.Request().Body, &req); err != nil {
		return err
	}
	resp, err := applyRelationships(c.Request().Context(), s.Relationships, req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}
