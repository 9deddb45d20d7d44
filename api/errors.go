package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
)

// The error table: the only place that turns an error into an HTTP status. An
// error wrapping none of the clearance kinds is internal: the caller sees
// "internal error" and the detail goes to the log.
var errorTable = []struct {
	kind   error
	status int
	typ    string
}{
	{clearance.ErrInvalid, http.StatusBadRequest, "invalid-input"},
	{clearance.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated"},
	{clearance.ErrForbidden, http.StatusForbidden, "forbidden"},
	{clearance.ErrNotFound, http.StatusNotFound, "not-found"},
	{clearance.ErrConflict, http.StatusConflict, "conflict"},
	{clearance.ErrUnsupported, http.StatusNotImplemented, "unsupported"},
	{clearance.ErrTooLarge, http.StatusRequestEntityTooLarge, "too-large"},
	{clearance.ErrRequestTimeout, http.StatusRequestTimeout, "request-timeout"},
	{clearance.ErrRateLimited, http.StatusTooManyRequests, "rate-limited"},
	{clearance.ErrOverloaded, http.StatusServiceUnavailable, "overloaded"},
	{clearance.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
}

// problemBase prefixes problem types (RFC 9457 type URIs; they need not resolve).
const problemBase = "https://clearance.dev/problems/"

// Status is the HTTP status the error table gives err.
func Status(err error) int {
	s, _ := classify(err)
	return s
}

func classify(err error) (int, string) {
	for _, row := range errorTable {
		if errors.Is(err, row.kind) {
			return row.status, row.typ
		}
	}
	return http.StatusInternalServerError, "internal"
}

// withoutKind is err's text without the kind its wrapping appended last
// ("...: forbidden"): the problem's type, title and status say the kind
// already. A short subject keeps it ("ticket: not found", "request body: too
// large"): alone it would say nothing. The error itself is unchanged, so
// errors.Is still sees the kind.
func withoutKind(err error) string {
	msg := err.Error()
	for _, row := range errorTable {
		if errors.Is(err, row.kind) {
			if rest, ok := strings.CutSuffix(msg, ": "+row.kind.Error()); ok && len(strings.Fields(rest)) >= 3 {
				return rest
			}
			return msg
		}
	}
	return msg
}

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type   string         `json:"type"`
	Title  string         `json:"title"`
	Status int            `json:"status"`
	Detail string         `json:"detail,omitempty"`
	Errors []ProblemField `json:"errors,omitempty"`
	// RequestID lets the caller quote the request to the operator.
	RequestID string `json:"request_id,omitempty"`
}

// ProblemField names one invalid field.
type ProblemField struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// RetryAfterError is an overload answer (429 or 503 by the kind it wraps):
// the error table sets Retry-After from After and uses Detail as the problem's
// detail.
type RetryAfterError struct {
	Kind   error // clearance.ErrRateLimited or clearance.ErrOverloaded
	After  time.Duration
	Detail string
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%s: %s (retry after %ds)", e.Kind, e.Detail, e.seconds())
}

// Unwrap makes the error its kind for the table.
func (e *RetryAfterError) Unwrap() error { return e.Kind }

// seconds is After rounded up to whole seconds, at least 1 (Retry-After has no
// fractions, and 0 would invite an immediate retry).
func (e *RetryAfterError) seconds() int {
	return max(1, int((e.After+time.Second-1)/time.Second))
}

// ScopeError is a missing scope: 403 with WWW-Authenticate error="insufficient_scope".
type ScopeError struct{ Scopes []string }

func (e *ScopeError) Error() string {
	return fmt.Sprintf("needs scope %s", strings.Join(e.Scopes, " or "))
}

// Unwrap makes a ScopeError a clearance.ErrForbidden.
func (e *ScopeError) Unwrap() error { return clearance.ErrForbidden }

// NeedScope answers a *ScopeError unless p carries one of scopes.
func NeedScope(p interface{ HasScope(string) bool }, scopes ...string) error {
	for _, s := range scopes {
		if p.HasScope(s) {
			return nil
		}
	}
	return &ScopeError{Scopes: scopes}
}

// problemFor builds the body for err and reports whether it is internal.
func problemFor(err error) Problem {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		// Router and framework errors (404 route, 405 method, 413 ...).
		p := Problem{Type: "about:blank", Title: http.StatusText(he.Code), Status: he.Code}
		if he.Code == http.StatusRequestEntityTooLarge {
			p.Type = problemBase + "too-large"
		}
		return p
	}
	status, typ := classify(err)
	p := Problem{Type: problemBase + typ, Title: http.StatusText(status), Status: status}
	var ra *RetryAfterError
	switch {
	case errors.As(err, &ra):
		// Overload answers say what was exceeded and when to come back; the text
		// is the server's own (limits, never request data).
		p.Detail = ra.Detail
	case status == http.StatusInternalServerError:
		p.Detail = "internal error"
	case status == http.StatusServiceUnavailable:
		p.Detail = "a backend is unavailable; try again shortly"
	case status == http.StatusUnauthorized:
		// Never say which check failed: that helps forgers, not callers.
		p.Detail = "missing or invalid credential"
	case status == http.StatusRequestTimeout:
		p.Detail = "the request body did not arrive before the server's read deadline"
	default:
		p.Detail = withoutKind(err)
	}
	var fe *clearance.FieldError
	if errors.As(err, &fe) {
		p.Detail = "invalid input"
		p.Errors = []ProblemField{{Field: fe.Field, Reason: fe.Reason}}
	}
	return p
}

// handleError is echo's HTTPErrorHandler: every error answer is problem+json.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if errors.Is(err, echo.ErrNotFound) {
		// echo's group catch-all answers 404 for a wrong method on a known
		// path; the path is known, so the answer is 405 with what it allows.
		if allow := s.allowedMethods(echo.GetPath(c.Request())); allow != "" {
			c.Response().Header().Set(echo.HeaderAllow, allow)
			err = echo.ErrMethodNotAllowed
		}
	}
	p := problemFor(err)
	p.RequestID = c.Response().Header().Get(echo.HeaderXRequestID)
	var overload *RetryAfterError
	if p.Status == http.StatusUnauthorized && s.cfg.ExplainUnauthenticated {
		p.Detail = "dev mode: " + withoutKind(err)
	}
	switch {
	case errors.As(err, &overload):
		// Refused by a limit: the access log has the line; an ERROR per refusal
		// would flood the log exactly when the server is busiest.
	case p.Status >= 500:
		s.log.Error("http: request failed", "request_id", p.RequestID, "method", c.Request().Method,
			"route", c.Path(), "status", p.Status, "err", err)
	case p.Status == http.StatusUnauthorized || p.Status == http.StatusForbidden:
		s.log.Info("http: refused", "request_id", p.RequestID, "route", c.Path(), "status", p.Status, "err", err)
	case p.Status == http.StatusRequestTimeout:
		// A slow or stalled client: worth a line, not an alert.
		s.log.Info("http: request body timed out", "request_id", p.RequestID, "route", c.Path(), "status", p.Status, "err", err)
	}
	h := c.Response().Header()
	if overload != nil {
		h.Set("Retry-After", strconv.Itoa(overload.seconds()))
	}
	switch p.Status {
	case http.StatusUnauthorized:
		v := fmt.Sprintf(`Bearer resource_metadata=%q`, s.resourceMetadataURL(c))
		if c.Request().Header.Get(echo.HeaderAuthorization) != "" || c.Request().Header.Get(headerAPIKey) != "" {
			v += `, error="invalid_token"`
		}
		h.Set(echo.HeaderWWWAuthenticate, v)
	case http.StatusForbidden:
		var se *ScopeError
		if errors.As(err, &se) {
			h.Set(echo.HeaderWWWAuthenticate, fmt.Sprintf(`Bearer error="insufficient_scope", scope=%q, resource_metadata=%q`,
				strings.Join(se.Scopes, " "), s.resourceMetadataURL(c)))
		}
	}
	h.Set(echo.HeaderContentType, "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	_ = c.JSON(p.Status, p)
}

// allowedMethods lists the methods routed for path ("DELETE, GET"), or "" for
// a path no route serves. It walks the route table; it runs only on a 404.
func (s *Server) allowedMethods(path string) string {
	var methods []string
	for _, r := range s.e.Routes() {
		if r.Method == echo.RouteNotFound || slices.Contains(methods, r.Method) || !routeMatches(r.Path, path) {
			continue
		}
		// A group's catch-all ("/v1/*") is registered for 404s only, but a
		// route of every method ("/mcp") is a real route.
		methods = append(methods, r.Method)
	}
	slices.Sort(methods)
	return strings.Join(methods, ", ")
}

// routeMatches reports whether an echo route pattern matches path: ":name"
// takes one non-empty segment (the rest when it ends the pattern), "*" the rest.
func routeMatches(pattern, path string) bool {
	for {
		if strings.HasPrefix(pattern, "*") {
			return true
		}
		if strings.HasPrefix(pattern, ":") {
			end := strings.IndexByte(pattern, '/')
			seg := strings.IndexByte(path, '/')
			if seg == 0 {
				return false
			}
			if end < 0 {
				// A trailing param takes the rest, slashes included, as
				// echo's router does for a leaf param.
				return path != ""
			}
			if seg < 0 {
				return false
			}
			pattern, path = pattern[end:], path[seg:]
			continue
		}
		i := strings.IndexAny(pattern, ":*")
		if i < 0 {
			return pattern == path
		}
		if !strings.HasPrefix(path, pattern[:i]) {
			return false
		}
		pattern, path = pattern[i:], path[i:]
	}
}
