package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/authz"
)

// KeyManager manages service-account API keys (auth.Keys).
type KeyManager interface {
	Create(ctx context.Context, tenant, serviceAccount, name string, scopes []string, by auth.Creator) (auth.KeyInfo, string, error)
	List(ctx context.Context, tenant string) ([]auth.KeyInfo, error)
	Revoke(ctx context.Context, tenant, id string) error
}

func (s *Server) registerAPIKeys(g *echo.Group) {
	g.POST("/tenants/:tenant/api-keys", s.createAPIKey)
	g.GET("/tenants/:tenant/api-keys", s.listAPIKeys)
	g.DELETE("/tenants/:tenant/api-keys/:id", s.revokeAPIKey)
}

// tenantAdmin allows operators (user token with clearance:admin) anywhere and a
// tenant's admins (per the engine, fresh) in their own tenant. Agents and
// service accounts never manage the tenant.
func (s *Server) tenantAdmin(ctx context.Context, p authz.Principal, tenant string) error {
	if p.Kind != authz.KindUser {
		return fmt.Errorf("%s principals cannot manage tenant %s: %w", p.Kind, tenant, clearance.ErrForbidden)
	}
	if p.HasScope(ScopeAdmin) {
		return nil
	}
	if p.Tenant != tenant {
		return fmt.Errorf("only the tenant's admins or an operator may do this: %w", clearance.ErrForbidden)
	}
	if s.deps.Engine == nil {
		return fmt.Errorf("no engine to check the tenant admin role: %w", clearance.ErrUnavailable)
	}
	ok, err := s.deps.Engine.Check(ctx, authz.Query{Consistency: authz.HigherConsistency},
		authz.Check{User: p.Subject(), Relation: "admin", Object: "tenant:" + tenant})
	if err != nil {
		return fmt.Errorf("tenant admin check: %w", err)
	}
	if !ok {
		return fmt.Errorf("only the tenant's admins or an operator may do this: %w", clearance.ErrForbidden)
	}
	return nil
}

// keysFor authorizes p on the tenant in the path and returns the key manager.
func (s *Server) keysFor(c echo.Context) (KeyManager, string, authz.Principal, error) {
	p, err := PrincipalFrom(c)
	if err != nil {
		return nil, "", p, err
	}
	tenant := c.Param("tenant")
	if !auth.ValidID(tenant) {
		return nil, "", p, clearance.Invalid("tenant", "is not a valid tenant id")
	}
	if err := s.tenantAdmin(c.Request().Context(), p, tenant); err != nil {
		return nil, "", p, err
	}
	if s.deps.APIKeys == nil {
		return nil, "", p, fmt.Errorf("no api key store configured: %w", clearance.ErrUnavailable)
	}
	return s.deps.APIKeys, tenant, p, nil
}

type createKeyRequest struct {
	ServiceAccount string   `json:"service_account"`
	Name           string   `json:"name"`
	Scopes         []string `json:"scopes"`
}

type createKeyResponse struct {
	auth.KeyInfo
	Key string `json:"key"`
}

func (s *Server) createAPIKey(c echo.Context) error {
	keys, tenant, p, err := s.keysFor(c)
	if err != nil {
		return err
	}
	var req createKeyRequest
	if err := decodeStrict(c.Request().Body, &req); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if err := s.serviceAccountOf(ctx, tenant, req.ServiceAccount); err != nil {
		return err
	}
	// The key records its minter: a tenant admin's key is bounded by that
	// admin's own access from now on (SPEC invariant 9); an operator's is not.
	by := auth.Creator{Kind: auth.CreatorTenantAdmin, User: p.User}
	if p.HasScope(ScopeAdmin) {
		by.Kind = auth.CreatorOperator
	}
	info, key, err := keys.Create(ctx, tenant, req.ServiceAccount, req.Name, req.Scopes, by)
	if err != nil {
		return err
	}
	s.log.Info("api key created", "by", p.String(), "tenant", tenant, "service_account", info.ServiceAccount, "key_id", info.ID, "created_by", by.Kind)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, createKeyResponse{KeyInfo: info, Key: key})
}

// serviceAccountOf refuses a service account that the engine does not place in
// tenant (service_account:<sa>#tenant@tenant:<tenant>). A missing account and
// another tenant's account get the same answer, so the check tells a tenant
// admin nothing about other tenants.
func (s *Server) serviceAccountOf(ctx context.Context, tenant, sa string) error {
	if !auth.ValidID(sa) {
		return clearance.Invalid("service_account", "is required and must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
	}
	if s.deps.Engine == nil {
		return fmt.Errorf("no engine to check the service account's tenant: %w", clearance.ErrUnavailable)
	}
	ok, err := s.deps.Engine.Check(ctx, authz.Query{Consistency: authz.HigherConsistency},
		authz.Check{User: "tenant:" + tenant, Relation: "tenant", Object: "service_account:" + sa})
	if err != nil {
		return fmt.Errorf("service account tenant check: %w", err)
	}
	if !ok {
		return clearance.Invalid("service_account", "is not a service account of tenant %q", tenant)
	}
	return nil
}

func (s *Server) listAPIKeys(c echo.Context) error {
	keys, tenant, _, err := s.keysFor(c)
	if err != nil {
		return err
	}
	list, err := keys.List(c.Request().Context(), tenant)
	if err != nil {
		return err
	}
	if list == nil {
		list = []auth.KeyInfo{}
	}
	return c.JSON(http.StatusOK, map[string]any{"keys": list})
}

func (s *Server) revokeAPIKey(c echo.Context) error {
	keys, tenant, p, err := s.keysFor(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	if err := keys.Revoke(c.Request().Context(), tenant, id); err != nil {
		return err
	}
	s.log.Info("api key revoked", "by", p.String(), "tenant", tenant, "key_id", id)
	return c.NoContent(http.StatusNoContent)
}
