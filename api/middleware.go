package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/clearance-dev/clearance"
)

// requestID keeps a sane caller-supplied X-Request-Id or makes one.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// accessLog writes one line per request: method, route (the pattern, never the
// query string), status, latency, principal. No headers, no bodies, no queries.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // writes the problem now so the status below is the real one
		}
		status := c.Response().Status
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		lat := time.Since(start)
		s.http.WithLabelValues(c.Request().Method, route, strconv.Itoa(status)).Observe(lat.Seconds())
		attrs := []any{"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
			"method", c.Request().Method, "route", route, "status", status,
			"latency_ms", float64(lat.Microseconds()) / 1000, "bytes", c.Response().Size}
		if p, ok := c.Get(principalKey).(principalValue); ok {
			attrs = append(attrs, "principal", p.p.String())
		}
		if sc := trace.SpanContextFromContext(c.Request().Context()); sc.HasTraceID() {
			attrs = append(attrs, "trace_id", sc.TraceID().String())
		}
		level := slog.LevelInfo
		var overload *RetryAfterError
		if status >= 500 && !errors.As(err, &overload) {
			level = slog.LevelWarn
		}
		s.log.Log(c.Request().Context(), level, "http: request", attrs...)
		return nil
	}
}

// bodyLimit refuses bodies over the limit: at once when Content-Length says so,
// and while reading otherwise (decodeStrict turns that into ErrTooLarge).
func (s *Server) bodyLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > s.cfg.BodyLimit {
			return fmt.Errorf("request body of %d bytes exceeds the limit of %d: %w", r.ContentLength, s.cfg.BodyLimit, clearance.ErrTooLarge)
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(c.Response(), r.Body, s.cfg.BodyLimit)
		}
		return next(c)
	}
}

// deadline gives every request's context the request timeout: whatever a
// handler starts (engine calls, store scans, queue waits) ends with it.
func (s *Server) deadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.RequestTimeout)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// readRoutes are the /v1 routes behind the read path's admission control
// (method and route pattern): each costs engine checks or listings per request.
// /mcp admits its tools/call requests itself (search_tickets, get_ticket,
// check_write).
var readRoutes = map[string]bool{
	http.MethodPost + " /v1/search":     true,
	http.MethodGet + " /v1/tickets/:id": true,
	http.MethodPost + " /v1/flow/check": true,
}

// writeRoutes are the /v1 routes behind the write path's admission control:
// each holds engine and store transactions.
var writeRoutes = map[string]bool{
	http.MethodPost + " /v1/tickets":                        true,
	http.MethodDelete + " /v1/tickets/:id":                  true,
	http.MethodPost + " /v1/relationships":                  true,
	http.MethodPost + " /v1/grants":                         true,
	http.MethodDelete + " /v1/grants/:agent":                true,
	http.MethodPost + " /v1/tenants/:tenant/api-keys":       true,
	http.MethodDelete + " /v1/tenants/:tenant/api-keys/:id": true,
}

// admitRoutes runs the read and write routes through their admission control
// (the principal's rate limit for reads, then a concurrency slot), under that
// path's deadline. Other routes (listings of grants, keys, audit) pass as they
// are: they read little and are bounded by their page sizes.
func (s *Server) admitRoutes(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		route := c.Request().Method + " " + c.Path()
		adm := s.adm
		switch {
		case readRoutes[route]:
		case writeRoutes[route]:
			adm = s.wadm
		default:
			return next(c)
		}
		p, err := PrincipalFrom(c)
		if err != nil {
			return err
		}
		ctx, release, err := adm.admit(c.Request().Context(), p)
		if err != nil {
			return err
		}
		defer release()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}
