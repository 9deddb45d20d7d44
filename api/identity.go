package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/authz"
)

// Authenticator verifies a bearer credential (a JWT access token or a clr_ API
// key) and returns its principal and expiry (zero: none). Failures wrap
// clearance.ErrUnauthenticated (401) or, when verification itself could not
// run (JWKS down), clearance.ErrUnavailable (503).
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (authz.Principal, time.Time, error)
}

// headerAPIKey is the alternative header for API keys.
const headerAPIKey = "X-API-Key"

const principalKey = "clearance.principal"

type principalValue struct {
	p       authz.Principal
	expires time.Time
}

// PrincipalFrom returns the verified principal of the request (set by the
// authentication middleware), or ErrUnauthenticated.
func PrincipalFrom(c echo.Context) (authz.Principal, error) {
	if v, ok := c.Get(principalKey).(principalValue); ok {
		return v.p, nil
	}
	return authz.Principal{}, fmt.Errorf("no verified principal: %w", clearance.ErrUnauthenticated)
}

// credential extracts the bearer credential: "Authorization: Bearer <x>" or
// "X-API-Key: clr_<x>" (both at once is refused as ambiguous; X-API-Key takes
// API keys only).
func credential(r *http.Request) (string, error) {
	ah, key := r.Header.Get(echo.HeaderAuthorization), r.Header.Get(headerAPIKey)
	switch {
	case ah != "" && key != "":
		return "", fmt.Errorf("both Authorization and %s given: %w", headerAPIKey, clearance.ErrUnauthenticated)
	case key != "":
		// X-API-Key is for API keys only: a JWT there would skip what a bearer
		// token is held to by proxies and logs that treat the two differently.
		key = strings.TrimSpace(key)
		if !strings.HasPrefix(key, auth.KeyPrefix) {
			return "", fmt.Errorf("%s holds something other than a %s key: %w", headerAPIKey, auth.KeyPrefix, clearance.ErrUnauthenticated)
		}
		return key, nil
	case ah == "":
		return "", fmt.Errorf("no credential: %w", clearance.ErrUnauthenticated)
	}
	scheme, tok, ok := strings.Cut(ah, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", fmt.Errorf("authorization scheme is not Bearer: %w", clearance.ErrUnauthenticated)
	}
	return strings.TrimSpace(tok), nil
}

// authenticate is the middleware of /v1: no verified principal, no handler.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		tok, err := credential(c.Request())
		if err != nil {
			return err
		}
		if s.deps.Auth == nil {
			return fmt.Errorf("no authenticator configured: %w", clearance.ErrUnauthenticated)
		}
		p, exp, err := s.deps.Auth.Authenticate(c.Request().Context(), tok)
		if err != nil {
			return err
		}
		c.Set(principalKey, principalValue{p: p, expires: exp})
		return next(c)
	}
}

// baseURL is the configured public URL or, without one, the request's origin.
func (s *Server) baseURL(c echo.Context) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	return c.Scheme() + "://" + c.Request().Host
}

func (s *Server) resourceMetadataURL(c echo.Context) string {
	return s.baseURL(c) + "/.well-known/oauth-protected-resource"
}

// Scopes the server understands (SPEC 9).
const (
	ScopeTicketsRead = "tickets:read"
	ScopeAdmin       = "clearance:admin"
	ScopeIndex       = "clearance:index"
	// ScopeAudit is declared in audit.go.
)

// protectedResource is the RFC 9728 metadata document.
func (s *Server) protectedResource(c echo.Context) error {
	servers := s.cfg.AuthorizationServers
	if servers == nil {
		servers = []string{}
	}
	c.Response().Header().Set("Cache-Control", "max-age=300")
	return c.JSON(http.StatusOK, map[string]any{
		"resource":                 s.baseURL(c),
		"authorization_servers":    servers,
		"scopes_supported":         []string{ScopeTicketsRead, ScopeIndex, ScopeAdmin, ScopeAudit},
		"bearer_methods_supported": []string{"header"},
		"resource_name":            "clearance",
	})
}
