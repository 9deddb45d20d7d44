package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel/trace"

	"github.com/clearance-dev/clearance/api"
	"github.com/clearance-dev/clearance/authz"
	fgaembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/openfga"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/telemetry"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/retrieval/openai"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
	"github.com/clearance-dev/clearance/retrieval/qdrant"
)

// defaultDataDir is where serve, index and demo (with --data-dir) keep the
// embedded engine's sqlite file, the embedded index, the dev issuer's key, API keys
// and the audit log when no database is configured. Relative to the working
// directory, like a project's build output: one data dir per deployment.
const defaultDataDir = "clearance-data"

// Backend choices. Each kind has exactly one switch below (openEngine, openStore,
// openEmbedder): this file is the only place that picks backends.
const (
	engineEmbedded = "embedded"
	engineOpenFGA  = "openfga"

	storeEmbedded = "embedded"
	storePGVector = "pgvector"
	storeQdrant   = "qdrant"

	embedderHashing = "hashing"
	embedderOpenAI  = "openai"
)

// serveConfig is everything `clearance serve` (and `demo`) is configured with.
type serveConfig struct {
	Addr        string
	PublicURL   string
	DataDir     string
	DatabaseURL string

	// Relationship engine.
	Engine          string // embedded | openfga ("" = openfga when OpenFGAURL is set)
	EngineDatastore string // sqlite | postgres | memory ("" = postgres with DatabaseURL)
	OpenFGAURL      string
	OpenFGAStoreID  string
	OpenFGAModelID  string
	OpenFGAToken    string
	// OpenFGAWriteModel writes clearance's model into a store it does not own.
	OpenFGAWriteModel bool
	// ChangelogWindow: how far back the revision probe re-reads the change log.
	ChangelogWindow time.Duration
	// OpenFGAListUsersMaxResults and OpenFGAListUsersDeadline are the remote
	// server's ListUsers caps (0: none), so a capped answer counts as truncated.
	OpenFGAListUsersMaxResults int
	OpenFGAListUsersDeadline   time.Duration

	// Vector store and embedder.
	Store string // embedded | pgvector | qdrant
	// DatabaseReadURL is an optional streaming replica for pgvector searches.
	DatabaseReadURL    string
	DatabaseReadMaxLag time.Duration
	// PGVectorPlan, PGVectorExactThreshold and PGVectorExactWorkers choose how
	// pgvector ranks a filter (retrieval/pgvector Config.Plan, ExactThreshold,
	// ExactWorkers); zero values take the store's defaults.
	PGVectorPlan           string // auto | exact | hnsw
	PGVectorExactThreshold int
	PGVectorExactWorkers   int
	// PGVectorBuildMemoryMB is maintenance_work_mem for pgvector's HNSW builds
	// (0: the store's default, 1024).
	PGVectorBuildMemoryMB int
	QdrantURL             string
	QdrantKey             string
	Embedder              string // hashing | openai
	EmbeddingDim          int
	OpenAIURL             string
	OpenAIModel           string
	OpenAIKey             string

	// QdrantCollection is the prefix of the Qdrant collections; a new one
	// re-indexes from scratch (e.g. to get the lexical arm on an index
	// created before it). QdrantLexicalMaxPostings bounds one lexical search.
	QdrantCollection         string
	QdrantLexicalMaxPostings int

	// Tokens.
	Issuer      string
	Audience    string
	JWKSURL     string
	TenantClaim string
	Dev         bool

	// Limits.
	MaxTopK        int
	MaxBodyBytes   int64
	RequestTimeout time.Duration
	SearchTimeout  time.Duration
	// Read-path admission (search, ticket fetch, MCP tool calls).
	MaxConcurrentSearches int
	MaxPerPrincipal       int
	SearchQueue           int
	SearchQueueTimeout    time.Duration
	RateLimit             float64 // per principal and second; 0: off
	RateBurst             int
	RateLimitPrincipals   int
	// Write-path admission (tickets, relationships, grants, API keys).
	MaxConcurrentWrites int
	WriteQueue          int

	// Embedded engine pool and concurrency.
	EngineMaxConns         int
	EngineMaxIdleConns     int
	EngineConnIdleTime     time.Duration
	EngineConcurrentChecks int
	// DecisionCacheSize bounds the post-filter's decision cache (entries).
	DecisionCacheSize int

	// Search ranking: the default mode and the hybrid fusion.
	SearchMode          string
	FusionK             int
	FusionDepth         int
	FusionVectorWeight  float64
	FusionLexicalWeight float64
	FusionRanksOnly     bool

	// Audit.
	AuditHashQueries bool
	AuditRetention   time.Duration
	AuditFailOpen    bool

	// Background indexing inside serve.
	IndexSource   string
	IndexEvery    time.Duration
	IndexSchedule string

	// AllowAnyTyp accepts access tokens whose typ header is not at+jwt.
	AllowAnyTyp bool

	LogLevel  string
	LogFormat string

	// tracer, when set (tests), receives the spans instead of the exporter
	// the OTEL_* variables choose.
	tracer trace.TracerProvider
}

// register binds cfg to cmd's flags. Every flag also reads CLEARANCE_<NAME>
// (root's applyEnv).
func (c *serveConfig) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address (host:port)")
	fl.StringVar(&c.PublicURL, "public-url", "", "external base URL of this server, its resource id for tokens (default http://<addr>)")
	c.registerData(fl, "data directory: engine sqlite file, embedded index, dev signing key, API keys, audit log",
		"PostgreSQL URL: engine datastore, pgvector store, API keys and audit log live there instead of the data dir")
	c.registerEngine(fl)
	c.registerIndex(fl)

	fl.StringVar(&c.Issuer, "issuer", "", "expected iss of access tokens")
	fl.StringVar(&c.Audience, "audience", "", "expected aud of access tokens (this API's resource URL)")
	fl.StringVar(&c.JWKSURL, "jwks-url", "", "JWKS URL of the token issuer")
	fl.StringVar(&c.TenantClaim, "tenant-claim", "tenant", "access-token claim holding the tenant id")
	fl.BoolVar(&c.Dev, "dev", false, "development mode: local token issuer with a key in the data dir (never in production)")

	fl.IntVar(&c.MaxTopK, "max-top-k", 100, "largest top_k a search may ask for")
	fl.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 1<<20, "largest request body in bytes (POST /v1/tickets batches included)")
	fl.DurationVar(&c.RequestTimeout, "request-timeout", 30*time.Second, "deadline of one HTTP request")
	fl.DurationVar(&c.SearchTimeout, "search-timeout", 10*time.Second, "deadline of one search, ticket fetch, flow check or MCP tool call, queueing included: no new search round starts after half of it (status partial) and the work is cut at it (503)")
	d := defaultLimits()
	fl.IntVar(&c.MaxConcurrentSearches, "max-concurrent-searches", d.MaxConcurrentSearches, "searches, ticket fetches, flow checks and MCP tool calls running at once (default 2 per core, at least 4)")
	fl.IntVar(&c.MaxPerPrincipal, "max-concurrent-per-principal", d.MaxPerPrincipal, "read-path requests one principal may have running or waiting at once (0 turns the limit off); past it the answer is 429 with Retry-After")
	fl.IntVar(&c.SearchQueue, "search-queue", d.SearchQueue, "how many more may wait for a slot; past it the answer is 503 with Retry-After")
	fl.DurationVar(&c.SearchQueueTimeout, "search-queue-timeout", d.SearchQueueTimeout, "longest wait for a slot; then 503 with Retry-After")
	fl.IntVar(&c.MaxConcurrentWrites, "max-concurrent-writes", d.MaxConcurrentWrites, "ticket, relationship, grant and API-key writes running at once, in slots of their own (default 1 per core, at least 2)")
	fl.IntVar(&c.WriteQueue, "write-queue", d.WriteQueue, "how many more writes may wait for a slot (up to --search-queue-timeout); past it the answer is 503 with Retry-After")
	fl.Float64Var(&c.RateLimit, "rate-limit", d.RateLimit, "read-path requests per second per principal (token bucket; 0 turns the limit off); past it the answer is 429 with Retry-After")
	fl.IntVar(&c.RateBurst, "rate-burst", d.RateBurst, "read-path requests a principal may send at once (the bucket size)")
	fl.IntVar(&c.RateLimitPrincipals, "rate-limit-principals", d.RateLimitPrincipals, "rate-limit buckets kept in memory; the least recently seen principal's is dropped first")
	fl.IntVar(&c.DecisionCacheSize, "decision-cache-size", filter.DefaultDecisionCacheSize, "entries of the post-filter's decision cache (one per principal and ticket, about 200 bytes each; exact: keyed by the engine's shared revision); 0 disables it")
	fl.StringVar(&c.SearchMode, "search-mode", "auto", "ranking of searches that name no mode: hybrid, vector, lexical, or auto (hybrid on the embedded store, whose lexical arm is as fast as its vectors; vector on pgvector and qdrant)")
	fl.IntVar(&c.FusionK, "fusion-k", filter.DefaultFusionK, "hybrid search: the reciprocal-rank constant (a visible chunk at rank r of an arm adds weight/(k+r))")
	fl.IntVar(&c.FusionDepth, "fusion-depth", filter.DefaultFusionDepth, "hybrid search: visible chunks each arm contributes before fusion (at least top_k)")
	fl.Float64Var(&c.FusionVectorWeight, "fusion-vector-weight", filter.DefaultFusionVectorWeight, "hybrid search: weight of the vector arm (0 skips it)")
	fl.Float64Var(&c.FusionLexicalWeight, "fusion-lexical-weight", filter.DefaultFusionLexicalWeight, "hybrid search: weight of the lexical arm (0 skips it)")
	fl.BoolVar(&c.FusionRanksOnly, "fusion-ranks-only", false, "hybrid search: fuse ranks alone (textbook reciprocal rank fusion), without multiplying the lexical weight by the lexical arm's margin (its top BM25 score over the best of another ticket)")

	fl.BoolVar(&c.AuditHashQueries, "audit-hash-queries", false, "store only the sha256 of query texts in the audit log")
	fl.DurationVar(&c.AuditRetention, "audit-retention", 0, "drop audit records older than this (0 keeps everything)")
	fl.BoolVar(&c.AuditFailOpen, "audit-fail-open", false, "keep answering searches when the audit log cannot be written (default: fail closed with 503)")
	fl.BoolVar(&c.AllowAnyTyp, "allow-any-typ", false, "accept access tokens whose typ header is not at+jwt (issuers such as Keycloak that omit it)")

	fl.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
}

// registerData binds --data-dir and --database-url; each command says what it
// keeps there.
func (c *serveConfig) registerData(fl *pflag.FlagSet, dataDir, databaseURL string) {
	fl.StringVar(&c.DataDir, "data-dir", defaultDataDir, dataDir)
	fl.StringVar(&c.DatabaseURL, "database-url", "", databaseURL)
}

// registerEngine binds the relationship-engine flags (serve, index, reconcile).
func (c *serveConfig) registerEngine(fl *pflag.FlagSet) {
	fl.StringVar(&c.Engine, "engine", "", "relationship engine: embedded or openfga (default embedded; openfga when --openfga-url is set)")
	fl.StringVar(&c.EngineDatastore, "engine-datastore", "", "embedded engine datastore: sqlite, postgres or memory (default sqlite; postgres with --database-url)")
	fl.StringVar(&c.OpenFGAURL, "openfga-url", "", "URL of a remote OpenFGA server's HTTP API (implies --engine openfga)")
	fl.StringVar(&c.OpenFGAStoreID, "openfga-store-id", "", "OpenFGA store id (default: find or create the store named clearance)")
	fl.StringVar(&c.OpenFGAModelID, "openfga-model-id", "", "pin an OpenFGA authorization model id, checked at start for every type and relation clearance needs (default: the store's latest model; clearance writes its own only into a store it created)")
	fl.StringVar(&c.OpenFGAToken, "openfga-token", "", "API token for the OpenFGA server")
	fl.BoolVar(&c.OpenFGAWriteModel, "openfga-write-model", false, "write clearance's authorization model as the latest of a store clearance did not create (remote OpenFGA, or the embedded engine on a shared PostgreSQL); never with --openfga-model-id")
	fl.IntVar(&c.OpenFGAListUsersMaxResults, "openfga-listusers-max-results", openfga.DefaultServerListUsersMaxResults, "the OpenFGA server's --listUsers-max-results (0: no cap, what the flow check needs for large audiences); an answer this large counts as truncated and the flow check denies")
	fl.DurationVar(&c.OpenFGAListUsersDeadline, "openfga-listusers-deadline", openfga.DefaultServerListUsersDeadline, "the OpenFGA server's --listUsers-deadline (0: none); a ListUsers lasting this long counts as truncated and the flow check denies")
	fl.DurationVar(&c.ChangelogWindow, "openfga-changelog-window", 30*time.Second, "how far back each revision probe re-reads OpenFGA's change log to see writes of other replicas that committed out of order: at least the longest tuple write (OpenFGA's --request-timeout, clearance's engine timeout) plus clock skew")
	fl.IntVar(&c.EngineMaxConns, "engine-max-conns", fgaembedded.DefaultMaxOpenConns(), "embedded engine: datastore connections open at most (sqlite: 3 descriptors each; default 8 per core, at least 16)")
	fl.IntVar(&c.EngineMaxIdleConns, "engine-max-idle-conns", 0, "embedded engine: idle datastore connections kept (default a quarter of --engine-max-conns, at least 2)")
	fl.DurationVar(&c.EngineConnIdleTime, "engine-conn-idle-time", fgaembedded.DefaultConnMaxIdleTime, "embedded engine: close a datastore connection idle this long")
	fl.IntVar(&c.EngineConcurrentChecks, "engine-concurrent-checks", fgaembedded.DefaultMaxConcurrentChecks(), "embedded engine: checks of one batch run at once (default 4 per core, at least 8)")
}

// limitDefaults are the read-path limits' defaults on this machine.
type limitDefaults struct {
	MaxConcurrentSearches, SearchQueue int
	MaxConcurrentWrites, WriteQueue    int
	MaxPerPrincipal                    int
	SearchQueueTimeout                 time.Duration
	RateLimit                          float64
	RateBurst, RateLimitPrincipals     int
}

func defaultLimits() limitDefaults {
	n := api.DefaultMaxConcurrent()
	w := api.DefaultMaxConcurrentWrites()
	return limitDefaults{MaxConcurrentSearches: n, SearchQueue: 8 * n, MaxConcurrentWrites: w, WriteQueue: 8 * w, MaxPerPrincipal: max(1, n/2), SearchQueueTimeout: api.DefaultQueueTimeout,
		RateLimit: api.DefaultRate, RateBurst: 2 * api.DefaultRate, RateLimitPrincipals: api.DefaultMaxPrincipals}
}

// apiLimits is the read path's admission configuration.
func (c *serveConfig) apiLimits() api.Limits {
	l := api.Limits{MaxConcurrent: c.MaxConcurrentSearches, PerPrincipal: c.MaxPerPrincipal, MaxQueue: c.SearchQueue, QueueTimeout: c.SearchQueueTimeout,
		Rate: c.RateLimit, Burst: c.RateBurst, MaxPrincipals: c.RateLimitPrincipals, Timeout: c.SearchTimeout}
	if c.SearchQueue == 0 {
		l.MaxQueue = -1 // api's zero means its default; the flag's means none
	}
	return l
}

// apiWriteLimits is the write path's admission configuration.
func (c *serveConfig) apiWriteLimits() api.Limits {
	l := api.Limits{MaxConcurrent: c.MaxConcurrentWrites, MaxQueue: c.WriteQueue, QueueTimeout: c.SearchQueueTimeout}
	if c.WriteQueue == 0 {
		l.MaxQueue = -1 // api's zero means its default; the flag's means none
	}
	return l
}

// registerIndex binds the vector-store and embedder flags (serve, index,
// reconcile): every command that opens the index must open it the same way.
func (c *serveConfig) registerIndex(fl *pflag.FlagSet) {
	fl.StringVar(&c.Store, "store", storeEmbedded, "vector store: embedded, pgvector (needs --database-url) or qdrant (needs --qdrant-url)")
	fl.StringVar(&c.DatabaseReadURL, "database-read-url", "", "streaming replica of --database-url that answers --store pgvector's vector searches while it is at most --database-read-max-lag behind (writes, ticket reads and reconcile stay on the primary)")
	fl.DurationVar(&c.DatabaseReadMaxLag, "database-read-max-lag", 5*time.Second, "most staleness a search may read from --database-read-url; a replica further behind, or whose lag cannot be measured, is skipped for the primary")
	fl.StringVar(&c.PGVectorPlan, "pgvector-plan", "auto", "how --store pgvector ranks a search: auto (exact up to --pgvector-exact-threshold allowed chunks, the approximate HNSW graph above it), exact (always; answers stay exact and complete, latency grows with the allowed chunks) or hnsw (always the graph; answers say exact:false and are never complete)")
	fl.IntVar(&c.PGVectorExactThreshold, "pgvector-exact-threshold", pgvector.DefaultExactThreshold, "largest number of allowed chunks --pgvector-plan auto ranks exactly (about 1-3 ms per 1,000 chunks on 2 cores, docs/benchmarks.md); above it answers come from HNSW and are reported approximate")
	fl.IntVar(&c.PGVectorExactWorkers, "pgvector-exact-workers", 2, "parallel workers PostgreSQL may add to one exact pgvector search (max_parallel_workers_per_gather; 0: none)")
	fl.IntVar(&c.PGVectorBuildMemoryMB, "pgvector-build-memory-mb", 1024, "memory in MB for building --store pgvector's HNSW index (PostgreSQL's maintenance_work_mem for the build); a graph that outgrows it is built on disk, many times slower: about 2 KB per 384-dimension chunk, so 2048+ at 1M chunks")
	fl.StringVar(&c.QdrantURL, "qdrant-url", "", "Qdrant gRPC address for --store qdrant, e.g. http://127.0.0.1:6334")
	fl.StringVar(&c.QdrantKey, "qdrant-api-key", "", "API key for the Qdrant server")
	fl.StringVar(&c.QdrantCollection, "qdrant-collection", "clearance", "prefix of --store qdrant's two collections (<prefix>_chunks, <prefix>_tickets); a new prefix is a new, empty index")
	fl.IntVar(&c.QdrantLexicalMaxPostings, "qdrant-lexical-max-postings", qdrant.DefaultLexicalMaxPostings, "most postings (allowed chunks holding a query term, once per term) one lexical search on --store qdrant reads; a search whose terms hold more reads the rarer terms whole and answers exact:false (status partial)")
	fl.StringVar(&c.Embedder, "embedder", embedderHashing, "embedder: hashing (built in) or openai (any OpenAI-compatible /v1/embeddings); must match the index")
	fl.IntVar(&c.EmbeddingDim, "embedding-dim", 384, "embedding dimension (hashing: any of 8..8192; openai: the model's output dimension)")
	fl.StringVar(&c.OpenAIURL, "openai-url", "", "base URL of the OpenAI-compatible embeddings API, e.g. http://127.0.0.1:11434/v1")
	fl.StringVar(&c.OpenAIModel, "openai-model", "", "embedding model name for --embedder openai")
	fl.StringVar(&c.OpenAIKey, "openai-key", "", "API key for --embedder openai")
}

// resolve fills the implied choices (engine from --openfga-url, datastore from
// --database-url) and validates the combination, with errors that name the flags.
func (c *serveConfig) resolve() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if _, port, err := net.SplitHostPort(c.Addr); err != nil || port == "" {
		bad("--addr %q: want host:port, e.g. 127.0.0.1:8080", c.Addr)
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--public-url %q: want an http(s) URL", c.PublicURL)
		}
	}
	if c.DataDir == "" {
		bad("--data-dir must not be empty")
	}
	if c.DatabaseURL != "" {
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			bad("--database-url: want postgres://user@host:port/db")
		}
	}

	// Engine.
	if c.Engine == "" {
		c.Engine = engineEmbedded
		if c.OpenFGAURL != "" {
			c.Engine = engineOpenFGA
		}
	}
	switch c.Engine {
	case engineEmbedded:
		if c.OpenFGAURL != "" || c.OpenFGAStoreID != "" || c.OpenFGAModelID != "" || c.OpenFGAToken != "" {
			bad("--openfga-url/--openfga-store-id/--openfga-model-id/--openfga-token need --engine openfga")
		}
		if c.EngineDatastore == "" {
			c.EngineDatastore = fgaembedded.SQLite
			if c.DatabaseURL != "" {
				c.EngineDatastore = fgaembedded.Postgres
			}
		}
		switch c.EngineDatastore {
		case fgaembedded.SQLite, fgaembedded.Memory:
		case fgaembedded.Postgres:
			if c.DatabaseURL == "" {
				bad("--engine-datastore postgres needs --database-url")
			}
		default:
			bad("--engine-datastore %q: want sqlite, postgres or memory", c.EngineDatastore)
		}
	case engineOpenFGA:
		if c.OpenFGAURL == "" {
			bad("--engine openfga needs --openfga-url")
		} else if u, err := url.Parse(c.OpenFGAURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--openfga-url %q: want an http(s) URL", c.OpenFGAURL)
		}
		if c.EngineDatastore != "" {
			bad("--engine-datastore applies to the embedded engine only (the OpenFGA server has its own)")
		}
	default:
		bad("--engine %q: want embedded or openfga", c.Engine)
	}

	if c.OpenFGAListUsersMaxResults < 0 || c.OpenFGAListUsersDeadline < 0 {
		bad("--openfga-listusers-max-results and --openfga-listusers-deadline must not be negative (0: the server has none)")
	}
	if c.OpenFGAWriteModel && c.OpenFGAModelID != "" {
		bad("--openfga-write-model and --openfga-model-id exclude each other: a pinned model is never replaced")
	}
	if c.ChangelogWindow != 0 && c.ChangelogWindow < time.Second {
		bad("--openfga-changelog-window %v: want at least 1s (the longest tuple write plus clock skew)", c.ChangelogWindow)
	}

	// Store.
	switch c.Store {
	case storeEmbedded:
	case storePGVector:
		if c.DatabaseURL == "" {
			bad("--store pgvector needs --database-url")
		}
		if c.DatabaseReadURL != "" {
			if u, err := url.Parse(c.DatabaseReadURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				bad("--database-read-url: want postgres://user@host:port/db")
			}
		}
		if c.DatabaseReadMaxLag <= 0 {
			bad("--database-read-max-lag %v: want a positive duration", c.DatabaseReadMaxLag)
		}
		if _, ok := pgvectorPlans[c.PGVectorPlan]; !ok && c.PGVectorPlan != "" {
			bad("--pgvector-plan %q: want auto, exact or hnsw", c.PGVectorPlan)
		}
		if c.PGVectorExactThreshold < 0 {
			bad("--pgvector-exact-threshold %d: want a positive number of chunks", c.PGVectorExactThreshold)
		}
		if c.PGVectorExactWorkers < 0 || c.PGVectorExactWorkers > 64 {
			bad("--pgvector-exact-workers %d: want 0 to 64", c.PGVectorExactWorkers)
		}
		if c.PGVectorBuildMemoryMB < 1 || c.PGVectorBuildMemoryMB > 2*1024*1024 {
			bad("--pgvector-build-memory-mb %d: want 1 to 2097152 (PostgreSQL's maintenance_work_mem range)", c.PGVectorBuildMemoryMB)
		}
	case storeQdrant:
		if c.QdrantURL == "" {
			bad("--store qdrant needs --qdrant-url")
		}
		if !validCollection(c.QdrantCollection) {
			bad("--qdrant-collection %q: want 1 to 200 letters, digits, '_' or '-'", c.QdrantCollection)
		}
		if c.QdrantLexicalMaxPostings < 1 || c.QdrantLexicalMaxPostings > 2_000_000 {
			bad("--qdrant-lexical-max-postings %d: want 1 to 2000000", c.QdrantLexicalMaxPostings)
		}
	default:
		bad("--store %q: want embedded, pgvector or qdrant", c.Store)
	}
	if c.DatabaseReadURL != "" && c.Store != storePGVector {
		bad("--database-read-url needs --store pgvector (only vector searches read the replica)")
	}
	if (c.QdrantURL != "" || c.QdrantKey != "") && c.Store != storeQdrant {
		bad("--qdrant-url/--qdrant-api-key need --store qdrant")
	}

	// Embedder.
	switch c.Embedder {
	case embedderHashing:
		if c.EmbeddingDim < 8 || c.EmbeddingDim > 8192 {
			bad("--embedding-dim %d: want 8..8192", c.EmbeddingDim)
		}
		if c.OpenAIURL != "" || c.OpenAIModel != "" || c.OpenAIKey != "" {
			bad("--openai-url/--openai-model/--openai-key need --embedder openai")
		}
	case embedderOpenAI:
		if c.OpenAIURL == "" || c.OpenAIModel == "" {
			bad("--embedder openai needs --openai-url and --openai-model")
		}
		if c.EmbeddingDim < 1 || c.EmbeddingDim > 8192 {
			bad("--embedding-dim %d: want the model's dimension, 1..8192", c.EmbeddingDim)
		}
	default:
		bad("--embedder %q: want hashing or openai", c.Embedder)
	}

	// Tokens.
	if c.Dev && c.JWKSURL != "" {
		bad("--dev and --jwks-url exclude each other: the dev issuer signs its own tokens")
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("--jwks-url %q: want an http(s) URL", c.JWKSURL)
		}
		if c.Issuer == "" || c.Audience == "" {
			bad("--jwks-url needs --issuer and --audience (both are checked on every token)")
		}
	}
	if c.TenantClaim == "" {
		bad("--tenant-claim must not be empty")
	}

	// Limits.
	if c.MaxTopK < 1 || c.MaxTopK > 1000 {
		bad("--max-top-k %d: want 1..1000", c.MaxTopK)
	}
	if c.MaxBodyBytes < 1024 {
		bad("--max-body-bytes %d: want at least 1024", c.MaxBodyBytes)
	}
	// Commands other than serve do not register the search flags: their
	// zero values mean the defaults.
	switch c.SearchMode {
	case "", "auto", "hybrid", "vector", "lexical":
	default:
		bad("--search-mode %q: want auto, hybrid, vector or lexical", c.SearchMode)
	}
	if c.FusionK < 0 || c.FusionK > 10_000 || c.FusionDepth < 0 || c.FusionDepth > 1000 {
		bad("--fusion-k %d / --fusion-depth %d: want 1..10000 and 1..1000", c.FusionK, c.FusionDepth)
	}
	if c.FusionVectorWeight < 0 || c.FusionLexicalWeight < 0 {
		bad("--fusion-vector-weight and --fusion-lexical-weight must not be negative")
	}
	if c.DecisionCacheSize < 0 || c.DecisionCacheSize > 100_000_000 {
		bad("--decision-cache-size %d: want 0 (off) .. 100000000", c.DecisionCacheSize)
	}
	if c.RequestTimeout <= 0 || c.SearchTimeout <= 0 {
		bad("--request-timeout and --search-timeout must be positive")
	} else if c.SearchTimeout > c.RequestTimeout {
		bad("--search-timeout (%s) must not exceed --request-timeout (%s)", c.SearchTimeout, c.RequestTimeout)
	}
	if c.MaxConcurrentSearches < 1 {
		bad("--max-concurrent-searches %d: want at least 1", c.MaxConcurrentSearches)
	}
	if c.MaxPerPrincipal < 0 {
		bad("--max-concurrent-per-principal %d: must not be negative (0 turns it off)", c.MaxPerPrincipal)
	}
	if c.MaxConcurrentWrites < 1 {
		bad("--max-concurrent-writes %d: want at least 1", c.MaxConcurrentWrites)
	}
	if c.WriteQueue < 0 {
		bad("--write-queue %d: must not be negative", c.WriteQueue)
	}
	if c.SearchQueue < 0 {
		bad("--search-queue %d: must not be negative", c.SearchQueue)
	}
	if c.SearchQueueTimeout <= 0 || c.SearchQueueTimeout >= c.SearchTimeout {
		bad("--search-queue-timeout %s: want positive and below --search-timeout (%s)", c.SearchQueueTimeout, c.SearchTimeout)
	}
	if c.RateLimit < 0 {
		bad("--rate-limit %g: must not be negative (0 turns it off)", c.RateLimit)
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		bad("--rate-burst %d: want at least 1", c.RateBurst)
	}
	if c.RateLimitPrincipals < 1 {
		bad("--rate-limit-principals %d: want at least 1", c.RateLimitPrincipals)
	}
	if c.EngineMaxConns < 1 || c.EngineMaxIdleConns < 0 || c.EngineMaxIdleConns > c.EngineMaxConns {
		bad("--engine-max-conns %d / --engine-max-idle-conns %d: want at least 1 connection, and idle ones at most that many", c.EngineMaxConns, c.EngineMaxIdleConns)
	}
	if c.EngineConnIdleTime <= 0 || c.EngineConcurrentChecks < 1 {
		bad("--engine-conn-idle-time must be positive and --engine-concurrent-checks at least 1")
	}
	if (c.IndexEvery != 0 || c.IndexSchedule != "") && c.IndexSource == "" {
		bad("--index-every/--index-schedule need --index-source")
	}
	if c.IndexSource != "" && (c.IndexEvery <= 0) == (c.IndexSchedule == "") {
		bad("--index-source needs exactly one of --index-every (a positive duration) or --index-schedule (cron)")
	}
	if c.AuditRetention < 0 {
		bad("--audit-retention %s: must not be negative", c.AuditRetention)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("--log-format %q: want text or json", c.LogFormat)
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// openEngine is the one switch over relationship engines.
func (c *serveConfig) openEngine(ctx context.Context, log *slog.Logger) (authz.Engine, error) {
	switch c.Engine {
	case engineEmbedded:
		e, err := fgaembedded.New(ctx, fgaembedded.Config{
			Datastore:       c.EngineDatastore,
			DataDir:         c.DataDir,
			DatabaseURL:     c.DatabaseURL,
			WriteModel:      c.OpenFGAWriteModel,
			ChangelogWindow: c.ChangelogWindow,
			Logger:          log.With("component", "openfga"),
			// Each connection holds descriptors (3 on sqlite); the pool
			// bound is what keeps a burst from exhausting them (issue 14).
			MaxOpenConns:        c.EngineMaxConns,
			MaxIdleConns:        c.EngineMaxIdleConns,
			ConnMaxIdleTime:     c.EngineConnIdleTime,
			MaxConcurrentChecks: c.EngineConcurrentChecks,
		})
		if err != nil {
			return nil, fmt.Errorf("embedded engine (%s): %w", c.EngineDatastore, err)
		}
		return e, nil
	case engineOpenFGA:
		e, err := openfga.New(ctx, openfga.Config{
			URL:             c.OpenFGAURL,
			StoreID:         c.OpenFGAStoreID,
			ModelID:         c.OpenFGAModelID,
			APIToken:        c.OpenFGAToken,
			WriteModel:      c.OpenFGAWriteModel,
			ChangelogWindow: c.ChangelogWindow,
			// The adapter's "none" is negative; the flags' is 0, like the server's.
			ServerListUsersMaxResults: cmp.Or(c.OpenFGAListUsersMaxResults, -1),
			ServerListUsersDeadline:   cmp.Or(c.OpenFGAListUsersDeadline, -1),
			Logger:                    log.With("component", "openfga"),
			// A traced request's traceparent goes along, so the server's own
			// spans join the trace when it exports to the same collector.
			HTTPClient: &http.Client{Transport: telemetry.PropagatingTransport(nil)},
		})
		if err != nil {
			return nil, fmt.Errorf("openfga at %s: %w", c.OpenFGAURL, err)
		}
		return e, nil
	}
	return nil, fmt.Errorf("--engine %q: want embedded or openfga", c.Engine)
}

// openEmbedder is openEmbedderLog without warnings (index, reconcile).
func (c *serveConfig) openEmbedder(ctx context.Context) (retrieval.Embedder, error) {
	return c.openEmbedderLog(ctx, slog.New(slog.DiscardHandler))
}

// openEmbedderLog is the one switch over embedders.
func (c *serveConfig) openEmbedderLog(_ context.Context, log *slog.Logger) (retrieval.Embedder, error) {
	switch c.Embedder {
	case embedderHashing:
		return retrieval.NewHashing(retrieval.HashingConfig{Dim: c.EmbeddingDim}), nil
	case embedderOpenAI:
		e, err := openai.New(openai.Config{BaseURL: c.OpenAIURL, Model: c.OpenAIModel, APIKey: c.OpenAIKey,
			Dim: c.EmbeddingDim, Logger: log.With("component", "embedder")})
		if err != nil {
			return nil, fmt.Errorf("--embedder openai: %w", err)
		}
		return e, nil
	}
	return nil, fmt.Errorf("--embedder %q: want hashing or openai", c.Embedder)
}

// openStore is the one switch over vector stores; the index is opened for emb's
// embedding space and refuses another (retrieval.ErrIndexMismatch).
func (c *serveConfig) openStore(ctx context.Context, emb retrieval.Embedder, log *slog.Logger) (retrieval.Store, error) {
	meta := retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}
	switch c.Store {
	case storeEmbedded:
		s, err := storeembedded.Open(ctx, storeembedded.Config{
			DataDir: filepath.Join(c.DataDir, "index"),
			Meta:    meta,
			Logger:  log.With("component", "store"),
		})
		if err != nil {
			return nil, fmt.Errorf("embedded store in %s: %w", filepath.Join(c.DataDir, "index"), err)
		}
		return s, nil
	case storePGVector:
		workers := c.PGVectorExactWorkers
		if workers == 0 {
			workers = -1 // the flag's 0 is none; the store's zero is its default
		}
		s, err := pgvector.Open(ctx, pgvector.Config{DatabaseURL: c.DatabaseURL, ReadDatabaseURL: c.DatabaseReadURL,
			MaxReplicaLag: c.DatabaseReadMaxLag, BuildMemoryMB: c.PGVectorBuildMemoryMB, Meta: meta, Logger: log.With("component", "store"),
			Plan: pgvectorPlans[c.PGVectorPlan], ExactThreshold: c.PGVectorExactThreshold, ExactWorkers: workers})
		if err != nil {
			return nil, fmt.Errorf("pgvector store at %s: %w", redactURL(c.DatabaseURL), err)
		}
		return s, nil
	case storeQdrant:
		s, err := qdrant.Open(ctx, qdrant.Config{URL: c.QdrantURL, APIKey: c.QdrantKey, Collection: c.QdrantCollection,
			LexicalMaxPostings: c.QdrantLexicalMaxPostings, Meta: meta, Logger: log.With("component", "store")})
		if err != nil {
			return nil, fmt.Errorf("qdrant store at %s: %w", c.QdrantURL, err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("--store %q: want embedded, pgvector or qdrant", c.Store)
}

// validCollection reports whether name is a Qdrant collection prefix we
// accept (Qdrant's own rules are looser; these names need no quoting anywhere).
func validCollection(name string) bool {
	if name == "" || len(name) > 200 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// pgvectorPlans maps --pgvector-plan to the store's plans.
var pgvectorPlans = map[string]pgvector.Plan{"auto": pgvector.PlanAuto, "exact": pgvector.PlanExact, "hnsw": pgvector.PlanHNSW}

// redactURL drops a URL's password for logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return strings.ReplaceAll(u.Redacted(), "%2A", "*")
}
