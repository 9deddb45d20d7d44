package indexer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/internal/strictjson"
	"github.com/clearance-dev/clearance/retrieval"
)

// Limits on a ticket's fields. A body over MaxBodyBytes is rejected rather than
// truncated: a silently shortened ticket would be unfindable by its tail.
const (
	MaxTitleBytes = 1 << 10
	MaxBodyBytes  = 1 << 20
)

// idPattern is the id syntax of tickets, tenants and projects (SPEC 10); it keeps
// ids safe inside OpenFGA object names ("ticket:<id>").
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidID reports whether s is a valid ticket, tenant or project id.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// ValidateTicket checks a ticket to be upserted. field is the JSON path of the
// ticket in its request ("tickets[3]", or "" for a bare object); the error is a
// *clearance.FieldError naming the offending field ("tickets[3].project").
func ValidateTicket(t retrieval.Ticket, field string) error {
	if err := validateID(t.ID, join(field, "id")); err != nil {
		return err
	}
	if err := validateID(t.Tenant, join(field, "tenant")); err != nil {
		return err
	}
	if err := validateID(t.Project, join(field, "project")); err != nil {
		return err
	}
	switch {
	case !utf8.ValidString(t.Title):
		return clearance.Invalid(join(field, "title"), "is not valid UTF-8")
	case len(t.Title) > MaxTitleBytes:
		return clearance.Invalid(join(field, "title"), "is longer than %d bytes", MaxTitleBytes)
	case !utf8.ValidString(t.Body):
		return clearance.Invalid(join(field, "body"), "is not valid UTF-8")
	case len(t.Body) > MaxBodyBytes:
		return clearance.Invalid(join(field, "body"), "is longer than %d bytes", MaxBodyBytes)
	case strings.TrimSpace(t.Title) == "" && strings.TrimSpace(t.Body) == "":
		return clearance.Invalid(join(field, "title"), "title and body are both empty")
	case t.UpdatedAt.After(time.Now().Add(24 * time.Hour)):
		// A far-future timestamp would pin a source's watermark past every later
		// change.
		return clearance.Invalid(join(field, "updated_at"), "is in the future")
	}
	return nil
}

// ValidateDelete checks a row that deletes a ticket: only its id matters.
func ValidateDelete(id, field string) error { return validateID(id, join(field, "id")) }

func validateID(s, field string) error {
	switch {
	case s == "":
		return clearance.Invalid(field, "is required")
	case !idPattern.MatchString(s):
		return clearance.Invalid(field, "must match %s", idPattern)
	}
	return nil
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// ContentHash identifies what a ticket's chunks and metadata were built from: its
// tenant, project, title and body. It has two parts, "<content>-<project>": the
// first covers tenant, title and body, the second the project, so a sync can
// tell a pure project move (no re-embedding, Store.Move) from an edit.
func ContentHash(t retrieval.Ticket) string {
	h := sha256.New()
	for _, s := range []string{"clearance-ticket-v1", t.Tenant, t.Title, t.Body} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	content := h.Sum(nil)
	project := sha256.Sum256([]byte(t.Project))
	return hex.EncodeToString(content[:16]) + "-" + hex.EncodeToString(project[:4])
}

// sameContent reports whether a stored content hash covers the same tenant,
// title and body as hash (the project part is ignored: after Store.Move the
// stored hash still names the old project, and the store's Project field is the
// truth).
func sameContent(stored, hash string) bool {
	a, _, ok1 := strings.Cut(stored, "-")
	b, _, ok2 := strings.Cut(hash, "-")
	return ok1 && ok2 && a == b
}

// Row is a ticket as sources and the API carry it (SPEC 10): a ticket to upsert,
// or, with Deleted, the id of a ticket to remove.
type Row struct {
	retrieval.Ticket
	Deleted bool `json:"deleted,omitempty"`
}

// Validate checks the row: a deletion needs only a valid id.
func (r Row) Validate(field string) error {
	if r.Deleted {
		return ValidateDelete(r.ID, field)
	}
	return ValidateTicket(r.Ticket, field)
}

// DecodeRow parses one JSON ticket object strictly (internal/strictjson):
// unknown fields, duplicate members, case variants of field names, invalid
// UTF-8, trailing data and wrong types are *clearance.FieldError values naming
// field. The row is not validated.
func DecodeRow(data []byte, field string) (Row, error) {
	var r Row
	if err := strictjson.Unmarshal(data, &r); err != nil {
		var se *strictjson.Error
		if !errors.As(err, &se) {
			return Row{}, clearance.Invalid(orRow(field), "%v", err)
		}
		if se.Field == "" {
			return Row{}, clearance.Invalid(orRow(field), "%s", se.Reason)
		}
		return Row{}, clearance.Invalid(join(field, se.Field), "%s", se.Reason)
	}
	return r, nil
}

func orRow(field string) string {
	if field == "" {
		return "row"
	}
	return field
}
