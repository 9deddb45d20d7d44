// Package retrieval is the vector-store and embedder contract of clearance.
//
// A Store holds tickets and their embedded chunks with tenant and project metadata,
// and answers filtered nearest-neighbour searches: tenant AND (project in P OR ticket
// in D). Backends live in subpackages: retrieval/embedded (the default, in process),
// retrieval/pgvector and retrieval/qdrant. retrieval/storetest is the conformance
// suite every store passes. Embedders turn text into vectors: the built-in hashing
// embedder (this package) and retrieval/openai for OpenAI-compatible servers.
package retrieval

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/clearance-dev/clearance"
)

// Errors returned by stores and embedders.
var (
	// ErrNotFound: no ticket with that id.
	ErrNotFound = fmt.Errorf("ticket: %w", clearance.ErrNotFound)
	// ErrIndexMismatch: the index was built with another embedding model or
	// dimension than the one it is opened with.
	ErrIndexMismatch = fmt.Errorf("index built with another embedding model: %w", clearance.ErrConflict)
	// ErrUnsupported: the store cannot run this kind of search (a lexical or
	// hybrid search on a store without a lexical index).
	ErrUnsupported = fmt.Errorf("vector store: %w", clearance.ErrUnsupported)
	// ErrUnavailable: the store or embedder failed or timed out.
	ErrUnavailable = fmt.Errorf("vector store: %w", clearance.ErrUnavailable)
)

// Ticket is the indexed document. Ids are global (OpenFGA's ticket:<id>).
type Ticket struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Project   string    `json:"project"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	UpdatedAt time.Time `json:"updated_at"`
	// ContentHash of tenant, project, title and body, set by the indexer; equal
	// hashes let a sync skip re-embedding.
	ContentHash string `json:"content_hash,omitempty"`
}

// Chunk is one embedded piece of a ticket. Ordinal numbers chunks from 0; the pair
// (ticket id, ordinal) is the chunk's stable identity.
type Chunk struct {
	Ordinal int
	Text    string
	Vector  []float32
}

// Filter restricts a search: Tenant AND (AllProjects OR Project in Projects OR
// Ticket in Tickets). A filter with no tenant, or with no projects, no tickets and
// AllProjects false, matches nothing.
type Filter struct {
	Tenant string
	// AllProjects matches every ticket of the tenant (tenant-admin path).
	AllProjects bool
	Projects    []string
	Tickets     []string
}

// SearchRequest asks for the K nearest chunks matching Filter, skipping the first
// Offset of the ranking (for paging). Vector must be unit length.
type SearchRequest struct {
	Vector []float32
	Filter Filter
	K      int
	Offset int
}

// Hit is one chunk in the ranking. Score is the cosine similarity (higher is
// closer); ties are broken by (TicketID, Ordinal) ascending so every store ranks
// identically and pages never overlap.
type Hit struct {
	TicketID string
	Tenant   string
	Project  string
	Title    string
	Ordinal  int
	Text     string
	Score    float32
}

// SearchResult is a ranking and how the store computed it.
type SearchResult struct {
	Hits []Hit
	// Plan names how the store read its index for this search ("exact": every
	// allowed chunk scored; "hnsw": an approximate graph walk). It goes into the
	// audit record.
	Plan string
	// Exact is true when Hits are exactly the filter's top chunks from Offset on
	// (recall 1, ties by id). An approximate plan sets it false: closer allowed
	// chunks may exist, and fewer than K hits no longer proves there are no more.
	// The zero value claims nothing, so a store that forgets to set it is
	// reported as approximate, never as exact.
	Exact bool
}

// Plans stores report in SearchResult.Plan.
const (
	PlanExact = "exact"
	PlanHNSW  = "hnsw"
	// PlanBM25: a lexical search that scored every allowed chunk holding a
	// query term (exact).
	PlanBM25 = "bm25"
)

// LexicalRequest asks for the K chunks matching Filter that score best on the
// query's exact terms, skipping the first Offset (paging). Terms are
// lexical.Terms of the query text: stores index with the same tokenizer, so the
// two agree.
type LexicalRequest struct {
	Terms  []string
	Filter Filter
	K      int
	Offset int
}

// LexicalSearcher is a store with a lexical (exact-term) index next to its
// vectors, under the same filter semantics as Search. A store without one does
// not implement it, and a search that asks for it fails with ErrUnsupported,
// never silently answering from the vectors alone.
type LexicalSearcher interface {
	// SearchLexical returns up to K hits that contain at least one of the
	// terms, ranked by BM25 score (higher is better, ties by (TicketID,
	// Ordinal) ascending), never a chunk outside the filter. Corpus statistics
	// are those of the chunks the filter allows, so no score depends on a
	// chunk outside it (docs/decisions/lexical-statistics.md). On an exact plan
	// fewer than K hits means no more matching chunks beyond Offset.
	SearchLexical(ctx context.Context, r LexicalRequest) (SearchResult, error)
}

// TicketRef is the metadata of an indexed ticket, for sync and reconciliation.
type TicketRef struct {
	ID          string
	Tenant      string
	Project     string
	UpdatedAt   time.Time
	ContentHash string
	Chunks      int
}

// Stats describes a store's contents.
type Stats struct {
	Tickets int    `json:"tickets"`
	Chunks  int    `json:"chunks"`
	Dim     int    `json:"dim"`
	Model   string `json:"model"`
	Backend string `json:"backend"`
}

// IndexMeta identifies the embedding space of an index. Stores persist it on first
// open and refuse to open with a different one (ErrIndexMismatch).
type IndexMeta struct {
	Model string `json:"model"`
	Dim   int    `json:"dim"`
}

// Store is a filtered vector index of tickets.
type Store interface {
	// Upsert replaces the ticket and all its chunks atomically: readers see either
	// the old chunks or the new ones, never a mix, and a ticket's old chunks vanish
	// in the same step (also when it changes project or tenant).
	Upsert(ctx context.Context, t Ticket, chunks []Chunk) error
	// Delete removes a ticket and its chunks. Deleting a missing ticket is not an
	// error.
	Delete(ctx context.Context, ticketID string) error
	// Move changes a ticket's project (ErrNotFound if missing).
	Move(ctx context.Context, ticketID, project string) error
	// Get returns a ticket (ErrNotFound if missing).
	Get(ctx context.Context, ticketID string) (Ticket, error)
	// Search returns up to K hits ranked by score and the plan that produced them.
	// On an exact plan, fewer than K hits means the filter has no more matching
	// chunks beyond Offset; an approximate plan (Exact false) promises neither.
	Search(ctx context.Context, r SearchRequest) (SearchResult, error)
	// Count returns the number of chunks matching a filter.
	Count(ctx context.Context, f Filter) (int, error)
	// Tickets yields every indexed ticket's metadata (order unspecified).
	Tickets(ctx context.Context) iter.Seq2[TicketRef, error]
	// Stats describes the store.
	Stats(ctx context.Context) (Stats, error)
	// Close flushes and releases the store.
	Close() error
}

// Embedder turns texts into unit-length vectors of Dim() dimensions.
type Embedder interface {
	// Embed returns one vector per text, in order.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Dim is the vector dimension.
	Dim() int
	// Model identifies the embedding space (stored with the index).
	Model() string
}
