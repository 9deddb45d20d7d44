// Package authz is the relationship-engine contract of clearance: principals, tuples,
// the Engine interface that every backend implements, and the authorization model
// (model.fga) that is written to the engine at start.
//
// Backends live in subpackages: authz/embedded runs OpenFGA in process, authz/openfga
// talks to a remote OpenFGA server. authz/authztest is the conformance suite both pass.
// Only cmd/clearance chooses between them.
package authz

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/clearance-dev/clearance"
)

// Errors returned by engines. They wrap the shared kinds in package clearance.
var (
	// ErrUnavailable: the engine could not answer (down, timed out, rate limited after
	// retries, or a per-item failure inside a batch). Callers must fail closed.
	ErrUnavailable = fmt.Errorf("authorization engine: %w", clearance.ErrUnavailable)
	// ErrTruncated: a listing was cut short by a limit or deadline. The objects already
	// yielded are a strict subset of the answer; the caller must not treat them as
	// complete.
	ErrTruncated = errors.New("authorization engine: listing truncated")
	// ErrInvalidTuple: a tuple does not fit the model (unknown type or relation,
	// wrong user type, bad condition). Nothing was written.
	ErrInvalidTuple = fmt.Errorf("authorization engine: invalid tuple: %w", clearance.ErrInvalid)
)

// Condition names a condition of the model and the parameters stored with a tuple.
type Condition struct {
	Name    string         `json:"name"`
	Context map[string]any `json:"context,omitempty"`
}

// Tuple is one relationship: User has Relation on Object, optionally under a
// Condition. User and Object are "type:id" (User may be "type:id#relation").
type Tuple struct {
	User      string     `json:"user"`
	Relation  string     `json:"relation"`
	Object    string     `json:"object"`
	Condition *Condition `json:"condition,omitempty"`
}

func (t Tuple) String() string { return t.Object + "#" + t.Relation + "@" + t.User }

// Consistency is the read-consistency preference sent with a query.
type Consistency int

const (
	// MinimizeLatency lets the engine answer from caches (pre-filter).
	MinimizeLatency Consistency = iota
	// HigherConsistency bypasses caches so a deleted tuple is visible at once
	// (post-filter: revocation must show on the next query).
	HigherConsistency
)

func (c Consistency) String() string {
	if c == HigherConsistency {
		return "HIGHER_CONSISTENCY"
	}
	return "MINIMIZE_LATENCY"
}

// Query carries what every engine call sends besides the question itself.
type Query struct {
	// ContextualTuples are considered for this call only (the delegation's active
	// tuple, for instance). They are never stored.
	ContextualTuples []Tuple
	// Context holds condition parameters. Engines add "current_time" (RFC 3339, from
	// Now or the wall clock) when it is missing, because a conditioned grant without
	// it makes the call fail.
	Context map[string]any
	// Now is the request time used for "current_time"; zero means time.Now().
	Now time.Time
	// Consistency preference for this call.
	Consistency Consistency
}

// WithCurrentTime returns q.Context with "current_time" set when missing. Engines
// call it on every request.
func (q Query) WithCurrentTime() map[string]any {
	if _, ok := q.Context["current_time"]; ok {
		return q.Context
	}
	now := q.Now
	if now.IsZero() {
		now = time.Now()
	}
	ctx := make(map[string]any, len(q.Context)+1)
	for k, v := range q.Context {
		ctx[k] = v
	}
	ctx["current_time"] = now.UTC().Format(time.RFC3339Nano)
	return ctx
}

// Check asks whether User has Relation on Object.
type Check struct {
	User     string
	Relation string
	Object   string
}

// TupleFilter selects stored tuples for Read. Object may be "type:" to match every
// object of a type; empty fields match anything, but Object or User must be set.
type TupleFilter struct {
	User     string
	Relation string
	Object   string
}

// Engine is the relationship engine as clearance uses it.
//
// Every method fails closed: an error means "no answer", never "allowed".
type Engine interface {
	// Write applies writes and deletes in one transaction. Writing an existing tuple
	// or deleting a missing one is not an error. Any tuple that does not fit the
	// model fails the whole call with ErrInvalidTuple and writes nothing.
	Write(ctx context.Context, writes, deletes []Tuple) error
	// Check answers one question.
	Check(ctx context.Context, q Query, c Check) (bool, error)
	// BatchCheck answers any number of questions; result i belongs to checks[i]. It
	// chunks to the engine's per-call limit and runs chunks concurrently with a
	// bounded fan-out. If any item fails, the whole call fails with ErrUnavailable.
	BatchCheck(ctx context.Context, q Query, checks []Check) ([]bool, error)
	// ListObjects yields the ids (without the "type:" prefix) of every object of
	// objectType on which user has relation, streamed to the end. If a limit or
	// deadline cut the listing short, the sequence ends with an error wrapping
	// ErrTruncated (or ErrUnavailable when the engine failed).
	ListObjects(ctx context.Context, q Query, user, relation, objectType string) iter.Seq2[string, error]
	// Read yields stored tuples matching the filter.
	Read(ctx context.Context, f TupleFilter) iter.Seq2[Tuple, error]
	// ModelID is the id of the authorization model this engine evaluates.
	ModelID() string
	// Close releases the engine's resources.
	Close() error
}

// Revision sources (Revision.Source).
const (
	// RevisionChangelog: the key follows OpenFGA's change log, which every replica
	// on the same store shares, so a write through any replica moves it.
	RevisionChangelog = "changelog"
	// RevisionProcess: the key counts this process's own writes. Only right where
	// the datastore admits one process (the sqlite file is locked, memory is
	// private).
	RevisionProcess = "process"
)

// Revision identifies the state of the engine's tuples for caches that decide
// what a principal may be shown.
type Revision struct {
	// Key differs from every key returned before any tuple write that committed
	// before the Revision call began. Equal keys mean no write committed in
	// between (as far as Source can see).
	Key string
	// Source says where the key comes from (RevisionChangelog, RevisionProcess).
	Source string
}

func (r Revision) String() string { return r.Source + ":" + r.Key }

// Revisioned is implemented by engines that can say cheaply whether any tuple
// changed: caches keyed by the revision are invalidated exactly, without a TTL.
// An error means "unknown": the caller must not serve a cached answer.
type Revisioned interface {
	Revision(ctx context.Context) (Revision, error)
}

// UserLister is implemented by engines that can list who has a relation on one
// object (OpenFGA's ListUsers). The flow check asks it for a destination's and
// each source's audience; both backends implement it.
type UserLister interface {
	// ListUsers answers every user of userType ("user", "service_account") that
	// has relation on object ("type:id"), as "type:id", sorted and without
	// duplicates. Usersets (team#member) are expanded by the engine, exclusions
	// (blocked) applied; a typed public wildcard comes back as "type:*". The answer
	// is complete or an error: a listing cut short by a result cap or a deadline is
	// an error wrapping ErrTruncated, an engine failure one wrapping ErrUnavailable.
	ListUsers(ctx context.Context, q Query, object, relation, userType string) ([]string, error)
}

// ChangeLister is implemented by engines that can say which objects the tuple
// writes between two of their revisions touched, so that caches keyed by the
// revision can drop only what those objects can affect. ok false means it
// cannot say: assume anything changed.
type ChangeLister interface {
	ChangedObjects(from, to Revision) (objects []string, ok bool)
}

// ClearanceModeled is implemented by engines that can tell whether the model
// they evaluate is clearance's own (ModelDSL, equal apart from ids) rather than
// another application's model that merely has the types and relations
// clearance uses. Caches whose exactness rests on properties of ModelDSL (the
// planner's decision cache: which relations depend on the time) stay off
// otherwise.
type ClearanceModeled interface {
	ClearanceModel() bool
}
