package retrieval

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/clearance-dev/clearance"
)

// CheckUpsert validates a ticket write against an index of dimension dim, so that
// every backend refuses the same bad input with the same field errors and writes
// nothing. Text fields must be valid UTF-8 without NUL bytes (PostgreSQL text and
// protobuf strings cannot hold anything else).
func CheckUpsert(t Ticket, chunks []Chunk, dim int) error {
	if t.ID == "" {
		return clearance.Invalid("id", "must not be empty")
	}
	if t.Tenant == "" {
		return clearance.Invalid("tenant", "must not be empty")
	}
	for _, f := range []struct{ name, v string }{
		{"id", t.ID}, {"tenant", t.Tenant}, {"project", t.Project}, {"title", t.Title},
		{"body", t.Body}, {"content_hash", t.ContentHash},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return err
		}
	}
	seen := make(map[int]bool, len(chunks))
	for i, c := range chunks {
		field := fmt.Sprintf("chunks[%d]", i)
		if c.Ordinal < 0 || c.Ordinal > math.MaxInt32 {
			return clearance.Invalid(field+".ordinal", "must be between 0 and %d, got %d", math.MaxInt32, c.Ordinal)
		}
		if seen[c.Ordinal] {
			return clearance.Invalid(field+".ordinal", "%d appears twice", c.Ordinal)
		}
		seen[c.Ordinal] = true
		if err := checkText(field+".text", c.Text); err != nil {
			return err
		}
		if err := CheckVector(field+".vector", c.Vector, dim); err != nil {
			return err
		}
	}
	return nil
}

func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return clearance.Invalid(field, "must be valid UTF-8")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return clearance.Invalid(field, "must not contain NUL bytes")
	}
	return nil
}

// CheckMove validates a Move's ticket id and new project.
func CheckMove(ticketID, project string) error {
	if ticketID == "" {
		return clearance.Invalid("id", "must not be empty")
	}
	if err := checkText("id", ticketID); err != nil {
		return err
	}
	return checkText("project", project)
}

// CheckSearch validates a search request against an index of dimension dim.
func CheckSearch(r SearchRequest, dim int) error {
	if err := CheckVector("vector", r.Vector, dim); err != nil {
		return err
	}
	if r.K < 1 {
		return clearance.Invalid("k", "must be at least 1, got %d", r.K)
	}
	if r.Offset < 0 {
		return clearance.Invalid("offset", "must not be negative, got %d", r.Offset)
	}
	return nil
}

// CheckVector reports a vector of the wrong length or with NaN or infinite
// components as a FieldError on field.
func CheckVector(field string, v []float32, dim int) error {
	if len(v) != dim {
		return clearance.Invalid(field, "has %d dimensions, the index has %d", len(v), dim)
	}
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return clearance.Invalid(field, "contains NaN or infinity")
		}
	}
	return nil
}

// Empty reports whether a filter can match nothing (no tenant, or no projects,
// no tickets and not AllProjects), so stores can answer without a query.
func (f Filter) Empty() bool {
	return f.Tenant == "" || (!f.AllProjects && len(f.Projects) == 0 && len(f.Tickets) == 0)
}
