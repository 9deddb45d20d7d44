package audit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/clearance-dev/clearance"
)

// Listing limits.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// ErrUnavailable is returned when the audit store cannot take or serve records.
// Callers of Append fail closed on it.
var ErrUnavailable = fmt.Errorf("audit log: %w", clearance.ErrUnavailable)

// Filter selects records for List. Empty fields match everything.
type Filter struct {
	Tenant string
	// Principal matches the user (users and agents) or the service account.
	Principal string
	Agent     string
	// Ticket matches records in which the ticket was a candidate (any decision).
	Ticket string
	// Since and Until bound the record time: Since <= Time < Until.
	Since, Until time.Time
	// Cursor continues a newest-first listing: only records with an id below it.
	Cursor string
	// After lists oldest first, records with an id above it (tail -f). It excludes
	// Cursor.
	After string
	Limit int
}

// Validate checks the filter and applies the default limit.
func (f *Filter) Validate() error {
	if f.Limit == 0 {
		f.Limit = DefaultListLimit
	}
	if f.Limit < 1 || f.Limit > MaxListLimit {
		return clearance.Invalid("limit", "is %d; want 1..%d", f.Limit, MaxListLimit)
	}
	if f.Cursor != "" && f.After != "" {
		return clearance.Invalid("after", "cannot be combined with cursor")
	}
	for name, v := range map[string]string{"cursor": f.Cursor, "after": f.After} {
		if v != "" && !ValidID(v) {
			return clearance.Invalid(name, "is not a record id")
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return clearance.Invalid("until", "must be after since")
	}
	return nil
}

// Match reports whether r passes every field of the filter except the cursor and
// limit (backends apply those while they scan in id order).
func (f Filter) Match(r *Record) bool {
	switch {
	case f.Tenant != "" && r.Tenant != f.Tenant:
		return false
	case f.Principal != "" && r.Principal.User != f.Principal && r.Principal.ServiceAccount != f.Principal:
		return false
	case f.Agent != "" && r.Principal.Agent != f.Agent:
		return false
	case !f.Since.IsZero() && r.Time.Before(f.Since):
		return false
	case !f.Until.IsZero() && !r.Time.Before(f.Until):
		return false
	case f.Ticket != "" && !slices.ContainsFunc(r.Results, func(c Candidate) bool { return c.TicketID == f.Ticket }):
		return false
	}
	return true
}

// Page is one List answer. Next is the cursor of the following page ("" at the
// end); with Filter.After it is the id to pass as After next time.
type Page struct {
	Records []Record `json:"records"`
	Next    string   `json:"next_cursor,omitempty"`
}

// Reader reads and verifies a log.
type Reader interface {
	// List answers records newest first (oldest first with Filter.After).
	List(ctx context.Context, f Filter) (Page, error)
	// Get answers one record, or an error wrapping clearance.ErrNotFound.
	Get(ctx context.Context, id string) (*Record, error)
	// Verify walks the whole chain from the genesis or the retention checkpoint.
	Verify(ctx context.Context) (VerifyReport, error)
}

// ProblemKind classifies the first break of the chain.
type ProblemKind string

const (
	// Edited: the record's content does not match its hash.
	Edited ProblemKind = "edited"
	// Removed: the record does not link to the one before it, and the missing link
	// appears nowhere later: a record was removed (or the one before it was
	// rewritten with a recomputed hash).
	Removed ProblemKind = "removed"
	// Reordered: the record is out of place (its predecessor appears later, or ids
	// go backwards).
	Reordered ProblemKind = "reordered"
	// Corrupt: a stored entry is not a record at all (not at the torn tail).
	Corrupt ProblemKind = "corrupt"
	// BadCheckpoint: the retention checkpoint's signature does not verify.
	BadCheckpoint ProblemKind = "bad_checkpoint"
)

// Problem is the first break of the chain found by Verify.
type Problem struct {
	Kind ProblemKind `json:"kind"`
	// Position counts records from the first ever appended (pruned ones included).
	Position int64  `json:"position"`
	ID       string `json:"id,omitempty"`
	Detail   string `json:"detail"`
}

func (p Problem) String() string {
	return fmt.Sprintf("%s at position %d (id %s): %s", p.Kind, p.Position, p.ID, p.Detail)
}

// TornTail describes an incomplete last entry left by a crash during a write. The
// write was never acknowledged, so it is not tampering; opening the log for
// writing cuts it off.
type TornTail struct {
	Segment string `json:"segment"`
	Offset  int64  `json:"offset"`
	Bytes   int64  `json:"bytes"`
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	// Records is the number of records checked (after the checkpoint).
	Records    int64       `json:"records"`
	FirstID    string      `json:"first_id,omitempty"`
	LastID     string      `json:"last_id,omitempty"`
	HeadHash   string      `json:"head_hash"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	TornTail   *TornTail   `json:"torn_tail,omitempty"`
	Problem    *Problem    `json:"problem,omitempty"`
}

// OK reports whether the chain is intact (a torn tail is not a break).
func (r VerifyReport) OK() bool { return r.Problem == nil }
