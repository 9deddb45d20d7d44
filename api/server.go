// Package api is clearance's HTTP server: the echo skeleton every endpoint hangs
// off (request ids, access log, body limit, timeouts, graceful shutdown), the one
// error-to-status table (errors.go, RFC 9457 problem+json), authentication of
// every /v1 request (bearer JWT or API key, middleware in identity.go), health,
// readiness, metrics and the OpenAPI document, plus the endpoints of each area
// (search, tickets, relationships, grants, API keys, audit).
//
// Areas register themselves on the authenticated /v1 group through Area and read
// the verified principal with PrincipalFrom. Handlers return errors; only the
// error table chooses status codes.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/clearance-dev/clearance/authz"
)

// Defaults of Config.
const (
	DefaultBodyLimit       = 1 << 20
	DefaultReadTimeout     = 30 * time.Second
	DefaultWriteTimeout    = 60 * time.Second
	DefaultIdleTimeout     = 2 * time.Minute
	DefaultShutdownTimeout = 15 * time.Second
	DefaultRequestTimeout  = 30 * time.Second
	// writeGrace is how much longer the connection's write deadline is than
	// the request's: time to write the 503 of a request cut at its deadline.
	writeGrace = 5 * time.Second
)

// Config is the server's plain configuration (filled from flags in cmd/clearance).
type Config struct {
	// Addr is the listen address of Run, e.g. ":8080".
	Addr string
	// PublicURL is the server's external base URL and its resource identifier
	// (RFC 8707 / RFC 9728), e.g. "https://clearance.example.com". Tokens must
	// carry it in aud unless the verifier is configured with another audience.
	PublicURL string
	// AuthorizationServers are the issuers announced in
	// /.well-known/oauth-protected-resource.
	AuthorizationServers []string
	// BodyLimit caps request bodies in bytes (default 1 MiB; larger: 413).
	BodyLimit int64
	// Timeouts of the http.Server and of the graceful shutdown.
	ReadTimeout, WriteTimeout, IdleTimeout, ShutdownTimeout time.Duration
	// RequestTimeout is the deadline of every request's context (default
	// DefaultRequestTimeout); the read path has the shorter Limits.Timeout.
	// WriteTimeout defaults to it plus a few seconds, so the answer to a
	// request cut at its deadline still reaches the client.
	RequestTimeout time.Duration
	// Limits bound the read path (search, ticket fetch, MCP tool calls).
	Limits Limits
	// WriteLimits bound the write path (tickets, relationships, grants, API
	// keys) the same way, in slots of their own so a burst of writes cannot
	// starve searches or the reverse. Rate is ignored; MaxConcurrent defaults to
	// DefaultMaxConcurrentWrites, Timeout to RequestTimeout; PerPrincipal is off
	// unless set.
	WriteLimits Limits
	// Logger receives the access log and internal errors (default: discard).
	Logger *slog.Logger
	// ExplainUnauthenticated puts the reason of a 401 (wrong audience, expired,
	// unknown issuer) in the problem's detail. Only serve --dev sets it: in
	// production the reason helps forgers more than callers, so it stays in the
	// log.
	ExplainUnauthenticated bool
}

// Area is a group of endpoints under /v1 (search, audit, ...). Register adds its
// routes to g, which sits behind the authentication middleware; principal
// returns the verified principal of a request (it is PrincipalFrom).
type Area interface {
	Register(g *echo.Group, principal func(echo.Context) (authz.Principal, error))
}

// Page is a set of routes outside /v1 with its own authentication (the /audit
// page's session cookie).
type Page interface {
	Register(e *echo.Echo)
}

// Deps are the server's collaborators. Everything is optional except Auth: a
// server without one answers every /v1 request with 401.
type Deps struct {
	// Auth verifies bearer credentials (JWT or API key).
	Auth Authenticator
	// Engine answers the role checks of grants and API-key management.
	Engine authz.Engine
	// APIKeys manages service-account keys (nil: the api-keys endpoints answer 503).
	APIKeys KeyManager
	// Ready are the backends /readyz checks, by name (e.g. "engine", "store").
	Ready map[string]Pinger
	// Metrics is our own registry, served at /metrics (nil: a fresh one). Never the
	// default registry: OpenFGA registers its collectors there.
	Metrics *prometheus.Registry
	// MoreMetrics are served at /metrics after Metrics (the embedded OpenFGA's
	// openfga_* families); optional.
	MoreMetrics prometheus.Gatherer
	// Tracer, when set, traces every request but /healthz, /readyz and
	// /metrics: a server span per request, continuing an incoming W3C
	// traceparent, its trace id in the access log.
	Tracer trace.TracerProvider
	// DevJWKS, when set, is served at /.well-known/jwks.json (serve --dev only).
	DevJWKS []byte
	// GrantEvents receives every grant and revocation (optional; the audit log).
	GrantEvents GrantRecorder
	// Areas and Pages are the endpoints of other packages' areas.
	Areas []Area
	Pages []Page
}

// Server is the HTTP API.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	e    *echo.Echo
	v1   *echo.Group
	reg  *prometheus.Registry
	http *prometheus.HistogramVec
	adm  *admission // read path
	wadm *admission // write path
	// tracer starts each request's server span (nil: tracing off).
	tracer trace.Tracer
}

// latencyBuckets are the admission wait's, 250 µs to 10 s.
var latencyBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// registerOrExisting registers c, or returns the collector already registered
// under its name: a second server on the same registry shares them.
func registerOrExisting[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(C); ok {
				return ex
			}
		}
	}
	return c
}

// New builds the server and registers every route.
func New(cfg Config, deps Deps) *Server {
	if cfg.BodyLimit <= 0 {
		cfg.BodyLimit = DefaultBodyLimit
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = max(DefaultWriteTimeout, cfg.RequestTimeout+writeGrace)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, deps: deps, log: cfg.Logger, e: echo.New(), reg: deps.Metrics, adm: newAdmission(cfg.Limits, "reads"),
		wadm: newAdmission(writeLimits(cfg.WriteLimits, cfg.RequestTimeout), "writes")}
	s.http = registerOrExisting(s.reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "clearance_http_request_duration_seconds",
		Help:    "HTTP request latency by method, route and status.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route", "status"}))
	s.adm.metrics(s.reg)
	s.wadm.metrics(s.reg)
	s.tracer = tracerOf(deps.Tracer)
	s.e.HideBanner, s.e.HidePort = true, true
	s.e.HTTPErrorHandler = s.handleError
	s.e.Use(s.requestID, s.traced, s.accessLog, s.bodyLimit, s.deadline)
	s.routes()
	return s
}

func (s *Server) routes() {
	s.e.GET("/healthz", s.healthz)
	s.e.GET("/readyz", s.readyz)
	s.e.GET("/metrics", s.metrics())
	s.e.GET("/openapi.yaml", serveOpenAPI)
	s.e.GET("/.well-known/oauth-protected-resource", s.protectedResource)
	if len(s.deps.DevJWKS) > 0 {
		s.e.GET("/.well-known/jwks.json", func(c echo.Context) error {
			c.Response().Header().Set("Cache-Control", "max-age=60")
			return c.Blob(http.StatusOK, "application/jwk-set+json", s.deps.DevJWKS)
		})
	}
	s.v1 = s.e.Group("/v1", s.authenticate, s.admitRoutes)
	s.registerGrants(s.v1)
	s.registerAPIKeys(s.v1)
	for _, a := range s.deps.Areas {
		a.Register(s.v1, PrincipalFrom)
	}
	for _, p := range s.deps.Pages {
		p.Register(s.e)
	}
}

// Echo returns the underlying router, for routes outside /v1 (e.g. /mcp behind
// s.Authenticate).
func (s *Server) Echo() *echo.Echo { return s.e }

// V1 returns the authenticated /v1 group.
func (s *Server) V1() *echo.Group { return s.v1 }

// Authenticate is the bearer-token middleware of /v1, for routes mounted
// elsewhere (/mcp).
func (s *Server) Authenticate(next echo.HandlerFunc) echo.HandlerFunc { return s.authenticate(next) }

// Handler is the server as an http.Handler (tests serve it with httptest).
func (s *Server) Handler() http.Handler { return s.e }

// Run listens on cfg.Addr and serves until ctx is done, then drains in-flight
// requests for at most ShutdownTimeout.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on an existing listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.e,
		ReadHeaderTimeout: min(s.cfg.ReadTimeout, 10*time.Second),
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("http: listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("http serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("http serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	s.log.Info("http: stopped")
	return nil
}
