package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/clearance-dev/clearance/api"
	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/api/pgsession"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/internal/telemetry"
	"github.com/clearance-dev/clearance/retrieval"
)

func newServeCommand() *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API (search, tickets, relationships, grants, audit, MCP)",
		Long: `Run the HTTP API. Defaults are all in process: the embedded OpenFGA engine on
sqlite and the embedded vector store, both in --data-dir, with the built-in hashing
embedder. --database-url moves the engine (and --store pgvector the index) into
PostgreSQL; --openfga-url uses a remote OpenFGA server instead. The combination is
validated at start and every problem is listed.`,
		Example: `  clearance serve --dev
  clearance serve --jwks-url https://idp.example/.well-known/jwks.json \
      --issuer https://idp.example/ --audience https://clearance.example/
  clearance serve --database-url postgres://clearance@db/clearance --store pgvector ...
  clearance serve --openfga-url http://openfga:8080 --openfga-store-id 01J...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.resolve(); err != nil {
				return err
			}
			log, err := newServeLogger(cmd.ErrOrStderr(), cfg)
			if err != nil {
				return err
			}
			a, err := openApp(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer a.Close()
			if cfg.IndexSource != "" {
				bg := indexer.BackgroundConfig{
					Source: cfg.IndexSource, Every: cfg.IndexEvery, Schedule: cfg.IndexSchedule,
					Store: a.store, Embedder: a.embedder, DataDir: cfg.DataDir, DatabaseURL: cfg.DatabaseURL,
					Logger: log.With("component", "indexer"),
				}
				if a.ownsTuples() {
					bg.Tuples = a.engine
				}
				bg.Observer = a.tel.IndexObserver("background")
				stop, err := indexer.StartBackground(cmd.Context(), bg)
				if err != nil {
					return fmt.Errorf("--index-source: %w", err)
				}
				defer stop()
			}
			ln, err := net.Listen("tcp", cfg.Addr)
			if err != nil {
				return err
			}
			return a.serve(cmd.Context(), ln, nil)
		},
	}
	cfg.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&cfg.IndexSource, "index-source", "", "index this JSONL file or directory in the background (with --index-every or --index-schedule)")
	fl.DurationVar(&cfg.IndexEvery, "index-every", 0, "background index interval, e.g. 5m")
	fl.StringVar(&cfg.IndexSchedule, "index-schedule", "", "background index cron schedule, e.g. \"*/5 * * * *\"")
	return cmd
}

func newServeLogger(w io.Writer, cfg serveConfig) (*slog.Logger, error) {
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// app is the opened backends of a server.
type app struct {
	cfg      serveConfig
	log      *slog.Logger
	engine   authz.Engine
	embedder retrieval.Embedder
	store    retrieval.Store
	indexer  *indexer.Indexer
	audit    auditStore
	keys     *auth.Keys
	sessions api.SessionStore // audit page sessions
	dev      *auth.DevKey     // --dev only
	base     string           // public URL once serving
	closers  []func() error
	// Telemetry: our metrics registry, the decorators' instruments and the
	// tracer provider (nil: tracing off).
	metrics *prometheus.Registry
	tel     *telemetry.Telemetry
	tracer  trace.TracerProvider
}

// openApp opens every backend cfg chooses; on error, whatever was opened is closed.
func openApp(ctx context.Context, cfg serveConfig, log *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	if err := a.openTelemetry(ctx); err != nil {
		return nil, err
	}
	if a.embedder, err = cfg.openEmbedderLog(ctx, log); err != nil {
		return nil, err
	}
	if a.store, err = cfg.openStore(ctx, a.embedder, log); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.store.Close)
	if a.engine, err = cfg.openEngine(ctx, log); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.engine.Close)
	a.engine = a.tel.Engine(a.engine)
	if a.audit, err = openAuditLog(ctx, auditConfig{DataDir: cfg.DataDir, DatabaseURL: cfg.DatabaseURL,
		HashQueries: cfg.AuditHashQueries, Retention: cfg.AuditRetention, FailOpen: cfg.AuditFailOpen,
		Observe: a.tel.FlushObserver()}, log); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	a.closers = append(a.closers, a.audit.Close)
	if a.keys, err = keysFromFlags(ctx, cfg.DataDir, cfg.DatabaseURL, log.With("component", "api-keys")); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.keys.Close)
	// Audit page sessions: in the shared database when there is one, so a
	// sign-in holds on every replica; else in this process.
	if cfg.DatabaseURL != "" {
		st, err := pgsession.Open(ctx, cfg.DatabaseURL, log)
		if err != nil {
			return nil, err
		}
		a.sessions = st
		a.closers = append(a.closers, st.Close)
	} else {
		a.sessions = api.NewMemorySessions()
	}
	if cfg.Dev {
		if a.dev, err = auth.LoadOrCreateDevKey(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("dev issuer: %w", err)
		}
		log.Warn("dev mode: tokens signed by the local dev issuer are accepted; never use in production")
	}
	if a.indexer, err = indexer.New(indexer.Config{Store: a.store, Embedder: a.embedder, Logger: log.With("component", "indexer"),
		Observer: a.tel.IndexObserver("push")}); err != nil {
		return nil, err
	}
	log.Info("backends open",
		"engine", cfg.Engine, "engine_datastore", cfg.EngineDatastore, "model_id", a.engine.ModelID(),
		"store", cfg.Store, "embedder", cfg.Embedder, "model", a.embedder.Model(), "dim", a.embedder.Dim(),
		"data_dir", cfg.DataDir, "database", redactURL(cfg.DatabaseURL))
	return a, nil
}

// Close releases the backends in reverse order of opening.
func (a *app) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

// ownsTuples reports whether tuple writes pass through this server (embedded
// engine): then ticket pushes write ticket#project and /v1/relationships is on.
func (a *app) ownsTuples() bool { return a.cfg.Engine == engineEmbedded }

// publicURL is the server's external base URL: --public-url, or the listener's.
func (a *app) publicURL(ln net.Listener) string {
	if a.cfg.PublicURL != "" {
		return strings.TrimRight(a.cfg.PublicURL, "/")
	}
	return "http://" + ln.Addr().String()
}

// audience is what tokens must carry in aud: --audience, else the public URL.
func (a *app) audience(base string) string {
	if a.cfg.Audience != "" {
		return a.cfg.Audience
	}
	return base
}

// authenticator builds the credential verifier: the configured issuer's JWKS,
// the dev issuer's key (--dev), and service-account API keys.
func (a *app) authenticator(ctx context.Context, base string) (*auth.Authenticator, []byte, error) {
	authn := &auth.Authenticator{}
	var jwks []byte
	aud := []string{a.audience(base)}
	if a.cfg.JWKSURL != "" {
		v, err := auth.NewJWTVerifier(ctx, auth.JWTConfig{Issuer: a.cfg.Issuer, Audiences: aud, JWKSURL: a.cfg.JWKSURL,
			TenantClaim: a.cfg.TenantClaim, AllowAnyTyp: a.cfg.AllowAnyTyp, Logger: a.log.With("component", "jwt")})
		if err != nil {
			return nil, nil, err
		}
		a.closers = append(a.closers, v.Close)
		authn.Verifiers = append(authn.Verifiers, v)
	}
	if a.cfg.Dev {
		if a.dev == nil {
			return nil, nil, errors.New("dev issuer key not loaded")
		}
		set, err := a.dev.PublicSet()
		if err != nil {
			return nil, nil, err
		}
		if jwks, err = a.dev.JWKS(); err != nil {
			return nil, nil, err
		}
		v, err := auth.NewJWTVerifier(ctx, auth.JWTConfig{Issuer: auth.DevIssuer, Audiences: aud, Keys: set,
			AuthMethod: "dev", TenantClaim: a.cfg.TenantClaim, Logger: a.log.With("component", "jwt")})
		if err != nil {
			return nil, nil, err
		}
		authn.Verifiers = append(authn.Verifiers, v)
	}
	authn.Keys = a.keys
	return authn, jwks, nil
}

// serve runs the HTTP API on ln until ctx is done. ready, when set, runs once the
// server answers (the demo's walkthrough); its error stops the server.
func (a *app) serve(ctx context.Context, ln net.Listener, ready func(base string) error) error {
	base := a.publicURL(ln)
	a.base = base
	authn, jwks, err := a.authenticator(ctx, base)
	if err != nil {
		ln.Close()
		return err
	}
	decisions := a.cfg.DecisionCacheSize
	if decisions == 0 {
		decisions = -1
	}
	// The planner starts no new round after half the search timeout (status
	// partial), so a slow search answers what it found before the read
	// path's deadline (Limits.Timeout) cuts it with a 503.
	mode, err := searchMode(a.cfg.SearchMode, a.store, a.cfg.Store == storeEmbedded)
	if err != nil {
		ln.Close()
		return err
	}
	planner := filter.New(filter.Config{Deadline: a.cfg.SearchTimeout / 2, HashQueries: a.cfg.AuditHashQueries, DecisionCacheSize: decisions,
		Logger: a.log.With("component", "filter"), Mode: mode,
		Fusion: filter.FusionConfig{K: a.cfg.FusionK, Depth: a.cfg.FusionDepth, VectorWeight: a.cfg.FusionVectorWeight, LexicalWeight: a.cfg.FusionLexicalWeight,
			RanksOnly: a.cfg.FusionRanksOnly}},
		a.engine, a.tel.Store(a.store), a.tel.Embedder(a.embedder), a.tel.AuditLog(a.audit))
	if err := a.tel.PlannerCaches(planner); err != nil {
		ln.Close()
		return err
	}
	tickets := &api.TicketWriter{Store: a.store, Indexer: a.indexer, Logger: a.log.With("component", "tickets")}
	search := &api.SearchAPI{Planner: planner, Tickets: tickets, MaxTopK: a.cfg.MaxTopK}
	if a.ownsTuples() {
		tickets.Engine = a.engine
		search.Relationships = a.engine
	}
	// The flow check (SPEC 13): both engines list users; it cites this
	// server's own audit records.
	var flowAPI *api.FlowAPI
	var flow *filter.Flow
	if fe, ok := a.engine.(filter.FlowEngine); ok {
		fc := filter.FlowConfig{Logger: a.log.With("component", "flow")}
		if m, ok := a.engine.(interface {
			Model() *openfgav1.AuthorizationModel
		}); ok {
			// The model the engine evaluates (a pinned or foreign one may differ
			// from clearance's: then every source is listed whole).
			fc.Model = m.Model()
		}
		flow = filter.NewFlow(fc, fe, a.audit, a.tel.AuditLog(a.audit))
		flowAPI = &api.FlowAPI{Flow: flow}
	}
	reader := &api.AuditReader{Log: a.audit, Engine: a.engine, Logger: a.log.With("component", "audit")}
	page, err := api.NewAuditPage(api.AuditPageConfig{Reader: reader, Authenticate: authn.Authenticate, Sessions: a.sessions,
		Logger: a.log.With("component", "audit-page")})
	if err != nil {
		ln.Close()
		return err
	}
	deps := api.Deps{
		Metrics: a.metrics,
		Tracer:  a.tracer,
		Auth:    a.tel.Authenticator(authn),
		Engine:  a.engine,
		APIKeys: a.keys,
		Ready:   map[string]api.Pinger{"engine": api.EnginePinger(a.engine), "store": api.StorePinger(a.store)},
		DevJWKS: jwks,
		// Every grant and revocation becomes an audit record too.
		GrantEvents: &api.AuditGrants{Log: a.tel.AuditLog(a.audit)},
		Areas:       []api.Area{search, reader},
		Pages:       []api.Page{page},
	}
	if flowAPI != nil {
		deps.Areas = append(deps.Areas, flowAPI)
	}
	if a.cfg.Engine == engineEmbedded {
		deps.MoreMetrics = openFGAMetrics()
	}
	var issuers []string
	if a.cfg.Issuer != "" {
		issuers = append(issuers, a.cfg.Issuer)
	}
	srv := api.New(api.Config{
		Addr: a.cfg.Addr, PublicURL: base, AuthorizationServers: issuers, BodyLimit: a.cfg.MaxBodyBytes,
		ReadTimeout: a.cfg.RequestTimeout, RequestTimeout: a.cfg.RequestTimeout, Limits: a.cfg.apiLimits(), WriteLimits: a.cfg.apiWriteLimits(), Logger: a.log,
		ExplainUnauthenticated: a.cfg.Dev,
	}, deps)
	if a.cfg.Dev {
		if err := writeDevServer(a.cfg.DataDir, devServer{URL: base, Audience: a.audience(base)}); err != nil {
			ln.Close()
			return err
		}
	}
	mcpSrv := &api.MCP{Planner: planner, MaxTopK: a.cfg.MaxTopK, Version: versionString()}
	if flow != nil {
		mcpSrv.Flow = flow
	}
	mcpSrv.Mount(srv)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	a.log.Info("serving", "url", base, "dev", a.cfg.Dev)
	if ready != nil {
		if err := ready(base); err != nil {
			cancel()
			<-errc
			return err
		}
	}
	return <-errc
}

// devToken mints a dev token for the running server (demo).
func (a *app) devToken(sub, tenant, act, scope string, ttl time.Duration) (string, error) {
	if a.dev == nil {
		return "", errors.New("dev issuer is off (start with --dev)")
	}
	return a.dev.Mint(auth.TokenRequest{Subject: sub, Tenant: tenant, Actor: act, Scopes: strings.Fields(scope),
		Audience: a.audience(a.base), TTL: ttl})
}

// searchMode resolves --search-mode against the store: auto is hybrid where
// the store's lexical index is as fast as its vectors (the embedded store:
// hybrid p50 0.94-1.00x vector, docs/benchmarks.md) and vector elsewhere
// (pgvector's BM25 in SQL is still about 2x an exact vector search over a
// whole tenant, and slower than the HNSW walk of large tenants, so hybrid
// there is chosen explicitly); an explicit lexical or hybrid default
// on a store without a lexical index is refused at start, not discovered by
// every search.
func searchMode(flag string, store any, fastLexical bool) (filter.Mode, error) {
	_, lex := store.(retrieval.LexicalSearcher)
	// A Qdrant index created before the lexical arm has none, though the
	// store type can search one.
	if h, ok := store.(interface{ HasLexicalIndex() bool }); ok && !h.HasLexicalIndex() {
		lex = false
	}
	switch {
	case (flag == "auto" || flag == "") && lex && fastLexical:
		return filter.ModeHybrid, nil
	case flag == "auto" || flag == "":
		return filter.ModeVector, nil
	case flag != "vector" && !lex:
		return "", fmt.Errorf("--search-mode %s: this store has no lexical index (the embedded and pgvector stores have one, and Qdrant collections created by this version): %w", flag, retrieval.ErrUnsupported)
	}
	return filter.Mode(flag), nil
}
