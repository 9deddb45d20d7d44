// Package clearance holds the error kinds shared by every package of the service.
//
// Packages wrap these sentinels (with %w) in their own errors; the HTTP layer maps
// them to status codes in exactly one table (api/errors.go). Anything that wraps none
// of them is an internal error: the caller sees only "internal error" and the detail
// goes to the operator's log.
package clearance

import (
	"errors"
	"fmt"
)

// Error kinds. Each maps to one HTTP status in api/.
var (
	// ErrInvalid: the request or a row is malformed; nothing was written.
	ErrInvalid = errors.New("invalid input")
	// ErrNotFound: the thing does not exist, or the caller may not see it. The two
	// are deliberately indistinguishable.
	ErrNotFound = errors.New("not found")
	// ErrUnauthenticated: no credential, or one that failed verification.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: a verified caller lacks the scope or role for this operation.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict: the operation contradicts the current state (for example, an
	// index opened with another embedding model).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: a backend (engine, store, JWKS, audit log) failed or ran out of
	// time. Answers fail closed with this error, never with unfiltered data.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrUnsupported: this deployment cannot do what was asked (a search mode
	// its store has no index for). Retrying will not help; changing the
	// request or the deployment will.
	ErrUnsupported = errors.New("not supported by this deployment")
	// ErrTooLarge: the request body or a field exceeds its limit.
	ErrTooLarge = errors.New("too large")
	// ErrRequestTimeout: the client stopped sending its request (the body did not
	// arrive before the server's read deadline). The client's doing, not ours.
	ErrRequestTimeout = errors.New("request timeout")
	// ErrRateLimited: the caller (one principal of one tenant) sent more requests
	// than its rate allows; it may retry later.
	ErrRateLimited = errors.New("rate limit exceeded")
	// ErrOverloaded: the server is saturated (every slot busy and the wait queue
	// full or its wait over); anyone may retry later.
	ErrOverloaded = errors.New("server saturated")
)

// FieldError says which field of the input is wrong and why. It is an ErrInvalid.
type FieldError struct {
	Field  string // JSON path of the field, e.g. "tickets[3].project"
	Reason string // human-readable, safe to show to the caller
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Invalid returns a FieldError for field with a formatted reason.
func Invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
