// Package client is a Go client of clearance's HTTP API (/v1): search, tickets,
// relationships, grants and the flow check. Errors are typed: an answer that is not 2xx is an
// *Error carrying the server's problem+json (RFC 9457), and it matches the
// shared kinds of package clearance with errors.Is (a 404 is
// clearance.ErrNotFound, a 400 clearance.ErrInvalid with the field named), so
// callers branch on kinds, not on status codes.
//
// It depends on nothing of the server's (no engine, no store): a program that
// only talks to clearance pulls in the standard library and package clearance.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clearance-dev/clearance"
)

// Limits of the server that callers batch to.
const (
	// MaxTuplesPerCall is the server's limit of writes plus deletes in one
	// POST /v1/relationships.
	MaxTuplesPerCall = 1000
	// MaxTicketsPerCall is the server's limit of tickets in one POST /v1/tickets.
	MaxTicketsPerCall = 1000
)

// Config configures a Client.
type Config struct {
	// Server is the base URL ("https://clearance.internal"); a trailing slash is
	// ignored.
	Server string
	// Credential is an access token (JWT) or an API key (clr_...), sent as
	// "Authorization: Bearer".
	Credential string
	// HTTPClient defaults to an http.Client with a 60 s timeout.
	HTTPClient *http.Client
	// Attempts bounds the tries of one call on transient failures (network
	// errors, 429, 502, 503, 504); default 4. Retries back off from 500 ms.
	Attempts int
	// MaxResponseBytes caps a response body read into memory (default 16 MiB).
	MaxResponseBytes int64
}

// Client calls one clearance server. It is safe for concurrent use.
type Client struct {
	base  string
	cred  string
	http  *http.Client
	tries int
	max   int64
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	base := strings.TrimRight(cfg.Server, "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, clearance.Invalid("server", "must be an http(s) URL, got %q", cfg.Server)
	}
	c := &Client{base: base, cred: cfg.Credential, http: cfg.HTTPClient, tries: cfg.Attempts, max: cfg.MaxResponseBytes}
	if c.http == nil {
		c.http = &http.Client{Timeout: 60 * time.Second}
	}
	if c.tries <= 0 {
		c.tries = 4
	}
	if c.max <= 0 {
		c.max = 16 << 20
	}
	return c, nil
}

// Server is the base URL the client calls.
func (c *Client) Server() string { return c.base }

// Problem is an RFC 9457 problem details body as clearance sends it.
type Problem struct {
	Type      string         `json:"type"`
	Title     string         `json:"title"`
	Status    int            `json:"status"`
	Detail    string         `json:"detail,omitempty"`
	Errors    []ProblemField `json:"errors,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
}

// ProblemField names one invalid field of the request.
type ProblemField struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Error is a non-2xx answer.
type Error struct {
	Method, Path string
	// Status is the HTTP status.
	Status int
	// Problem is the decoded problem+json body (Title from the status when the
	// body was not a problem).
	Problem Problem
	// WWWAuthenticate is the header of a 401 or 403 (error="insufficient_scope",
	// the resource metadata URL).
	WWWAuthenticate string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.Path, e.Status, e.Problem.Title)
	for _, f := range e.Problem.Errors {
		fmt.Fprintf(&b, "; %s: %s", f.Field, f.Reason)
	}
	if len(e.Problem.Errors) == 0 && e.Problem.Detail != "" {
		b.WriteString(": " + e.Problem.Detail)
	}
	if e.Problem.RequestID != "" {
		b.WriteString(" (request " + e.Problem.RequestID + ")")
	}
	return b.String()
}

// Unwrap returns the clearance kind of the status (the inverse of the server's
// error table), and for a 400 naming one field a *clearance.FieldError, so
// errors.Is(err, clearance.ErrInvalid) and errors.As(err, &fieldErr) both work.
func (e *Error) Unwrap() []error {
	var kind error
	switch e.Status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		kind = clearance.ErrInvalid
	case http.StatusUnauthorized:
		kind = clearance.ErrUnauthenticated
	case http.StatusForbidden:
		kind = clearance.ErrForbidden
	case http.StatusNotFound:
		kind = clearance.ErrNotFound
	case http.StatusConflict:
		kind = clearance.ErrConflict
	case http.StatusRequestEntityTooLarge:
		kind = clearance.ErrTooLarge
	case http.StatusRequestTimeout:
		kind = clearance.ErrRequestTimeout
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		kind = clearance.ErrUnavailable
	default:
		return nil
	}
	out := []error{kind}
	if len(e.Problem.Errors) > 0 {
		f := e.Problem.Errors[0]
		out = append(out, &clearance.FieldError{Field: f.Field, Reason: f.Reason})
	}
	return out
}

// Transient reports whether retrying the call later may succeed.
func (e *Error) Transient() bool {
	switch e.Status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// do sends one call, retrying transient failures with backoff, and decodes a
// 2xx JSON answer into out (nil: discard). body is marshalled once.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := c.once(ctx, method, path, u, body, out)
		var apiErr *Error
		transient := err != nil && (!errors.As(err, &apiErr) || apiErr.Transient())
		if !transient || attempt >= c.tries || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-ctx.Done():
			return fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
	}
}

func (c *Client) once(ctx context.Context, method, path, u string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if c.cred != "" {
		req.Header.Set("Authorization", "Bearer "+c.cred)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %w", method, path, clearance.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.max+1))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w: %w", method, path, clearance.ErrUnavailable, err)
	}
	if int64(len(data)) > c.max {
		return fmt.Errorf("%s %s: answer over %d bytes: %w", method, path, c.max, clearance.ErrTooLarge)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Method: method, Path: path, Status: resp.StatusCode, WWWAuthenticate: resp.Header.Get("WWW-Authenticate")}
		if json.Unmarshal(data, &e.Problem) != nil || e.Problem.Status == 0 {
			e.Problem = Problem{Title: http.StatusText(resp.StatusCode), Status: resp.StatusCode, Detail: strings.TrimSpace(string(data[:min(len(data), 512)]))}
		}
		return e
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}
