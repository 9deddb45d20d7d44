package api

import (
	"github.com/labstack/echo/v4"
)

// GrantRecorder receives every grant and revocation, for the audit trail.
type GrantRecorder interface{}

func (s *Server) registerGrants(g *echo.Group) {}
