// Package filter is clearance's query planner: it turns a verified principal and a
// search request into a pre-filter (tenant always; the tenant-admin shortcut, or the
// projects and directly shared tickets the engine lists), searches the store with
// it (vectors, the lexical index, or both fused by reciprocal rank: Mode), checks
// every candidate with the engine before it can be returned (BatchCheck,
// HIGHER_CONSISTENCY), over-fetches and pages until it has k allowed results or
// knows it cannot, and hands one audit record per decision to the audit log. The
// pre-filter only narrows; the post-filter decides.
package filter

import (
	"cmp"
	"context"
	"iter"
	"log/slog"
	"time"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/retrieval"
)

// Engine is what the planner asks the relationship engine. authz.Engine satisfies
// it; an engine that also implements authz.Revisioned gets exact cache
// invalidation.
type Engine interface {
	ListObjects(ctx context.Context, q authz.Query, user, relation, objectType string) iter.Seq2[string, error]
	BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error)
	ModelID() string
}

// Store is what the planner reads from the vector store. retrieval.Store
// satisfies it.
type Store interface {
	Search(ctx context.Context, r retrieval.SearchRequest) (retrieval.SearchResult, error)
	Get(ctx context.Context, ticketID string) (retrieval.Ticket, error)
}

// Embedder turns the query into a vector. retrieval.Embedder satisfies it.
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// Config tunes the planner. The zero value is usable: every field has a default.
type Config struct {
	// MaxRounds bounds store searches per request (default 6).
	MaxRounds int
	// MaxCandidates bounds the chunks fetched from the store per request
	// (default 2000).
	MaxCandidates int
	// Deadline is the time budget of one search: no new round starts after it
	// (default 2s). Engine and store calls still honour the caller's context.
	Deadline time.Duration
	// MinFetch is the smallest first page (default 20); the first page is
	// max(MinFetch, 2k).
	MinFetch int
	// PostFilterOnlyFactor multiplies the first page on the post-filter-only path,
	// where the store filter is the whole tenant and more candidates are denied
	// (default 4).
	PostFilterOnlyFactor int
	// CacheSize bounds the pre-filter cache in entries, least recently used out
	// first (default 1024; negative disables the cache).
	CacheSize int
	// DecisionCacheSize bounds the post-filter's decision cache in entries (one
	// per principal and ticket), least recently used out first (default 65,536;
	// negative disables it). Only engines with revisions (authz.Revisioned) use
	// it; see docs/decisions/decision-cache.md.
	DecisionCacheSize int
	// CacheTTL is how long a cached pre-filter lives when the engine does not
	// report revisions (neither clearance engine: both do). Default 5s. With a
	// revisioned engine entries are keyed by the revision and never served
	// stale; the audit record's plan says which applied.
	CacheTTL time.Duration
	// HashQueries stores only the sha256 of the query (and no intent text) in
	// audit records.
	HashQueries bool
	// SnippetChars is the snippet length, cut on a word boundary (default 300).
	SnippetChars int
	// Logger receives debug and warning lines (never query or ticket text above
	// debug). Nil discards.
	Logger *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Mode is the search mode of a request that names none (default vector;
	// cmd/clearance picks hybrid when the store has a lexical index, see
	// docs/benchmarks.md).
	Mode Mode
	// Fusion tunes hybrid search.
	Fusion FusionConfig
}

// Mode is how a search ranks: by vector similarity, by exact terms (BM25), or
// both fused by reciprocal rank.
type Mode string

// Search modes.
const (
	ModeVector  Mode = "vector"
	ModeLexical Mode = "lexical"
	ModeHybrid  Mode = "hybrid"
)

// ParseMode checks a mode name ("" is allowed: the planner's default).
func ParseMode(s string) (Mode, bool) {
	switch m := Mode(s); m {
	case "", ModeVector, ModeLexical, ModeHybrid:
		return m, true
	}
	return "", false
}

// FusionConfig tunes reciprocal rank fusion: a visible chunk at rank r (from
// 1) of an arm adds weight/(K+r) to its fused score. The zero value is usable.
type FusionConfig struct {
	// K dampens the head of each ranking (default 2: the RRF paper's 60 makes
	// rank 1 and rank 2 of an arm nearly equal, so a chunk both arms rank
	// lowly beats the one exact match only the lexical arm finds; measured in
	// docs/benchmarks.md).
	K int
	// VectorWeight and LexicalWeight scale the arms (defaults 1 and 4, set
	// together: if both are zero both take their default; negative is treated
	// as 0).
	VectorWeight, LexicalWeight float64
	// Depth is how many chunks of each arm's ranking are fused (default 10;
	// never fewer than top_k; it grows when the post-filter leaves fewer than
	// k). complete means exact over this depth of each arm.
	Depth int
	// RanksOnly turns off the lexical margin: by default the lexical arm's
	// weight is multiplied, per query, by its top hit's BM25 score over the
	// best score of another ticket in its fused depth (at least 1), so a
	// ticket that a very rare term sets far apart keeps its lead over one
	// both arms rank moderately (docs/decisions/hybrid-fusion.md). RanksOnly
	// fuses ranks alone, as textbook reciprocal rank fusion does.
	RanksOnly bool
}

// Defaults of FusionConfig (docs/benchmarks.md, retrieval quality).
const (
	DefaultFusionK             = 2
	DefaultFusionDepth         = 10
	DefaultFusionVectorWeight  = 1
	DefaultFusionLexicalWeight = 4
)

// Defaults of Config.
const (
	DefaultMaxRounds            = 6
	DefaultMaxCandidates        = 2000
	DefaultDeadline             = 2 * time.Second
	DefaultMinFetch             = 20
	DefaultPostFilterOnlyFactor = 4
	DefaultCacheSize            = 1024
	DefaultDecisionCacheSize    = 65536
	DefaultCacheTTL             = 5 * time.Second
	DefaultSnippetChars         = 300
)

func (c *Config) defaults() {
	c.MaxRounds = cmp.Or(c.MaxRounds, DefaultMaxRounds)
	c.MaxCandidates = cmp.Or(c.MaxCandidates, DefaultMaxCandidates)
	c.Deadline = cmp.Or(c.Deadline, DefaultDeadline)
	c.MinFetch = cmp.Or(c.MinFetch, DefaultMinFetch)
	c.PostFilterOnlyFactor = cmp.Or(c.PostFilterOnlyFactor, DefaultPostFilterOnlyFactor)
	c.CacheSize = cmp.Or(c.CacheSize, DefaultCacheSize)
	c.DecisionCacheSize = cmp.Or(c.DecisionCacheSize, DefaultDecisionCacheSize)
	c.CacheTTL = cmp.Or(c.CacheTTL, DefaultCacheTTL)
	c.SnippetChars = cmp.Or(c.SnippetChars, DefaultSnippetChars)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Fusion.K = cmp.Or(c.Fusion.K, DefaultFusionK)
	c.Fusion.Depth = cmp.Or(c.Fusion.Depth, DefaultFusionDepth)
	if c.Fusion.VectorWeight == 0 && c.Fusion.LexicalWeight == 0 {
		c.Fusion.VectorWeight, c.Fusion.LexicalWeight = DefaultFusionVectorWeight, DefaultFusionLexicalWeight
	}
	c.Fusion.VectorWeight = max(c.Fusion.VectorWeight, 0)
	c.Fusion.LexicalWeight = max(c.Fusion.LexicalWeight, 0)
}

// Filters are the request's own restrictions (narrowing only).
type Filters struct {
	// Projects restricts the search to these projects; empty means no filter.
	Projects []string
}

// Intent is what the caller says it is doing; its projects narrow like Filters.
type Intent struct {
	Description string
	Projects    []string
}

// Request is one search. The API validates lengths and ranges; the planner
// rejects only what it cannot run (empty query, TopK < 1).
type Request struct {
	Query         string
	TopK          int
	Filters       Filters
	Intent        Intent
	GroupByTicket bool
	// RequestID correlates the audit record with the HTTP request.
	RequestID string
	// Kind is the audit record kind ("search" by default; "mcp_search" from MCP).
	Kind string
	// Mode ranks by vector, lexical or hybrid; empty is the planner's default.
	Mode Mode
}

// Status of a search answer.
type Status string

const (
	// Complete: the exact visible top k (every store page came from an exact
	// plan).
	Complete Status = "complete"
	// Exhausted: fewer than k visible matches exist; all of them are returned
	// (proved by exact store plans only).
	Exhausted Status = "exhausted"
	// Partial: the results are checked but closer or more visible matches may
	// exist: the budget (rounds, candidates, deadline) ran out before k were
	// found, or the store answered from an approximate plan (Response.Exact is
	// then false). docs/decisions/search-status-exactness.md.
	Partial Status = "partial"
)

// DefaultMode is the mode of requests that name none.
func (pl *Planner) DefaultMode() Mode { return pl.cfg.Mode }

// Result is one returned chunk. Score is the arm's score in vector (cosine)
// and lexical (BM25) mode, and the fused reciprocal-rank score in hybrid mode.
type Result struct {
	TicketID  string  `json:"ticket_id"`
	ProjectID string  `json:"project_id"`
	TenantID  string  `json:"tenant_id"`
	Title     string  `json:"title"`
	Snippet   string  `json:"snippet"`
	Chunk     int     `json:"chunk"`
	Score     float32 `json:"score"`
}

// Response is a search answer.
type Response struct {
	Results []Result `json:"results"`
	Status  Status   `json:"status"`
	// Exact is false when any store page of this answer came from an approximate
	// plan (pgvector's HNSW walk, Qdrant's HNSW): the results are all visible,
	// but they may not be the closest visible ones.
	Exact   bool   `json:"exact"`
	AuditID string `json:"audit_id"`
}

// TicketResponse is a single visible ticket and the id of its audit record.
type TicketResponse struct {
	Ticket  retrieval.Ticket
	AuditID string
}

// Planner runs searches and ticket reads for verified principals. It is safe for
// concurrent use.
type Planner struct {
	cfg   Config
	eng   Engine
	store Store
	lex   retrieval.LexicalSearcher // nil: the store has no lexical index
	emb   Embedder
	log   audit.Log
	cache *cache
	// decisions holds post-filter answers by revision.
	decisions *decisionCache
}

// New returns a planner over eng, store, emb and the audit log.
func New(cfg Config, eng Engine, store Store, emb Embedder, log audit.Log) *Planner {
	cfg.defaults()
	lex, _ := store.(retrieval.LexicalSearcher)
	cfg.Mode = cmp.Or(cfg.Mode, ModeVector)
	size := cfg.DecisionCacheSize
	// The decision cache's time bounds are proven for clearance's own model
	// only (docs/decisions/decision-cache.md).
	if m, ok := eng.(authz.ClearanceModeled); size > 0 && (!ok || !m.ClearanceModel()) {
		cfg.Logger.Info("filter: decision cache off: the engine does not evaluate clearance's own model")
		size = -1
	}
	changes, _ := eng.(authz.ChangeLister)
	return &Planner{cfg: cfg, eng: eng, store: store, lex: lex, emb: emb, log: log, cache: newCache(cfg.CacheSize), decisions: newDecisionCache(size, changes)}
}
