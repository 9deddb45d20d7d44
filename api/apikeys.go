package api

import (
	"github.com/labstack/echo/v4"
)

// KeyManager manages service-account API keys.
type KeyManager interface{}

func (s *Server) registerAPIKeys(g *echo.Group) {}
