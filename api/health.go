package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/retrieval"
)

// Pinger is a backend /readyz checks.
type Pinger interface {
	Ping(ctx context.Context) error
}

// PingFunc adapts a function to Pinger.
type PingFunc func(ctx context.Context) error

// Ping calls f.
func (f PingFunc) Ping(ctx context.Context) error { return f(ctx) }

// EnginePinger asks the engine one question whose answer does not matter: only
// that it answers.
func EnginePinger(e authz.Engine) Pinger {
	return PingFunc(func(ctx context.Context) error {
		_, err := e.Check(ctx, authz.Query{}, authz.Check{User: "user:readyz", Relation: "member", Object: "tenant:readyz"})
		return err
	})
}

// StorePinger reads the store's stats.
func StorePinger(st retrieval.Store) Pinger {
	return PingFunc(func(ctx context.Context) error {
		_, err := st.Stats(ctx)
		return err
	})
}

// readyTimeout bounds each readiness check.
const readyTimeout = 2 * time.Second

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz checks every backend concurrently; any failure is 503 (the failing
// backend's name is shown, its error only logged).
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		failed bool
	)
	checks := map[string]string{}
	for name, p := range s.deps.Ready {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Ping(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.log.Warn("readyz: backend not ready", "backend", name, "err", err)
				failed = true
				checks[name] = "fail"
				return
			}
			checks[name] = "ok"
		}()
	}
	wg.Wait()
	if failed {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "checks": checks})
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ok", "checks": checks})
}

func (s *Server) metrics() echo.HandlerFunc {
	var g prometheus.Gatherer = s.reg
	if s.deps.MoreMetrics != nil {
		g = prometheus.Gatherers{s.reg, s.deps.MoreMetrics}
	}
	return echo.WrapHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}
