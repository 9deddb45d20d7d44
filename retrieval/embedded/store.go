// Package embedded is clearance's default vector store: in process, zero setup,
// exact.
//
// Chunk vectors are grouped by (tenant, project) into partitions, each one
// contiguous row-major float32 slab, so a filtered search reads only the
// partitions the filter allows, sequentially, at close to memory bandwidth.
// Tickets named directly in a filter are found through an id index. Search is
// exact (recall 1.0) with an AVX2 kernel (github.com/viterin/vek) or a pure-Go
// fallback, optionally with an int8 first pass whose rigorous error bounds keep
// the result identical to the float scan; big scans are split across cores.
//
// With a data directory every write is one CRC-framed record in a write-ahead
// log, fsynced before it becomes visible; snapshots compact the log. A crash at
// any moment leaves each ticket in its old or its new state, never partly
// written. Readers run in parallel; writers are serialized and apply each
// ticket change under a short exclusive lock, so a search never sees half a
// ticket.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"runtime"
	"sync"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
)

// Config configures a Store.
type Config struct {
	// DataDir holds the index; empty keeps it in memory only (tests, benchmarks).
	DataDir string
	// Meta is the embedding space; a DataDir built with another is refused with
	// retrieval.ErrIndexMismatch.
	Meta retrieval.IndexMeta
	// Quantize adds an int8 copy of every vector (+25% memory) and scans it
	// first, rescoring only rows that can still make the top k. Results are the
	// same as without it.
	Quantize bool
	// Workers is how many goroutines a large scan is split across; 0 means
	// GOMAXPROCS.
	Workers int
	// Logger receives warnings (torn log tails, compactions); nil discards.
	Logger *slog.Logger
	// NoSync skips the fsync after each write. A process crash (kill -9) still
	// loses nothing that was acknowledged; a machine crash may lose the last
	// writes, but never tears one. For bulk loads.
	NoSync bool
	// CompactBytes is the log size from which a compaction (a new snapshot) is
	// considered; it happens once the log is also larger than twice the live
	// data. 0 means 64 MiB.
	CompactBytes int64
	// PureGo disables the assembly kernels (for benchmarks and tests).
	PureGo bool
}

// Store is the embedded vector store. It implements retrieval.Store.
type Store struct {
	cfg    Config
	log    *slog.Logger
	kernel string
	scan   scanner

	ops           chan *op     // writes for the committer goroutine
	sendMu        sync.RWMutex // guards stopping against sends on a closed ops
	stopping      bool
	committerDone chan struct{}

	writeMu sync.Mutex   // held by the committing writer: log append, apply, compaction
	mu      sync.RWMutex // guards ix and closed; held shared by every read
	ix      *index
	closed  bool
	disk    *disk // nil in memory mode

	// lexScratch pools the lexical arm's score accumulators (*lexScratch),
	// one per concurrent search, sized by the largest partition scanned.
	lexScratch sync.Pool
}

var (
	_ retrieval.Store           = (*Store)(nil)
	_ retrieval.LexicalSearcher = (*Store)(nil)
)

// errClosed is returned by every call after Close.
var errClosed = fmt.Errorf("embedded store is closed: %w", retrieval.ErrUnavailable)

// Open opens (or creates) the store in cfg.DataDir, or an empty in-memory store
// when DataDir is empty.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Meta.Dim <= 0 {
		return nil, clearance.Invalid("meta.dim", "must be positive, got %d", cfg.Meta.Dim)
	}
	if cfg.Meta.Model == "" {
		return nil, clearance.Invalid("meta.model", "must not be empty")
	}
	if !littleEndian() {
		return nil, errors.New("embedded store: big-endian machines are not supported")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.CompactBytes <= 0 {
		cfg.CompactBytes = 64 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kernel, dot := pickKernel(cfg.PureGo)
	s := &Store{
		cfg: cfg, log: log, kernel: kernel,
		// A loaded index is quantized afterwards, in parallel (quantizeAll).
		ix: newIndex(cfg.Meta.Dim, cfg.Quantize && cfg.DataDir == ""),
		scan: scanner{
			dim: cfg.Meta.Dim, dot: dot, workers: cfg.Workers,
			// Measured (docs/benchmarks.md): below ~4 MiB of vectors the rows sit
			// in cache, and both a second goroutine and the int8 pass's per-row
			// bookkeeping cost more than they save.
			minSplit: max(1, (4<<20)/(4*cfg.Meta.Dim)),
			minQuant: max(1, (4<<20)/(4*cfg.Meta.Dim)),
		},
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		d, err := openDisk(cfg.DataDir, cfg.Meta, s.ix, log, cfg.NoSync)
		if err != nil {
			return nil, err
		}
		s.disk = d
		if cfg.Quantize {
			s.ix.quantizeAll(cfg.Workers)
		}
		log.Info("embedded store opened", "dir", cfg.DataDir, "tickets", len(s.ix.tickets), "chunks", s.ix.chunks, "kernel", kernel)
	}
	s.ops = make(chan *op, maxBatch)
	s.committerDone = make(chan struct{})
	go s.committer()
	return s, nil
}

// Kernel names the float32 distance kernel in use ("avx2" or "go").
func (s *Store) Kernel() string { return s.kernel }

// DataDir returns the directory the store persists to ("" in memory).
func (s *Store) DataDir() string { return s.cfg.DataDir }

// validate checks a ticket write and flattens its chunks.
func (s *Store) validate(t retrieval.Ticket, chunks []retrieval.Chunk) (*upsertRecord, error) {
	if t.ID == "" {
		return nil, clearance.Invalid("id", "must not be empty")
	}
	if t.Tenant == "" {
		return nil, clearance.Invalid("tenant", "must not be empty")
	}
	dim := s.cfg.Meta.Dim
	u := &upsertRecord{
		t:     t,
		ords:  make([]int32, len(chunks)),
		texts: make([]string, len(chunks)),
		vecs:  make([]float32, 0, len(chunks)*dim),
	}
	seen := make(map[int]bool, len(chunks))
	for i, c := range chunks {
		field := fmt.Sprintf("chunks[%d]", i)
		if c.Ordinal < 0 || c.Ordinal > math.MaxInt32 {
			return nil, clearance.Invalid(field+".ordinal", "must be between 0 and %d, got %d", math.MaxInt32, c.Ordinal)
		}
		if seen[c.Ordinal] {
			return nil, clearance.Invalid(field+".ordinal", "%d appears twice", c.Ordinal)
		}
		seen[c.Ordinal] = true
		if err := checkVector(field+".vector", c.Vector, dim); err != nil {
			return nil, err
		}
		u.ords[i] = int32(c.Ordinal)
		u.texts[i] = c.Text
		u.vecs = append(u.vecs, c.Vector...)
	}
	u.docs = lexDocs(t, u.texts)
	return u, nil
}

func checkVector(field string, v []float32, dim int) error {
	if len(v) != dim {
		return clearance.Invalid(field, "has %d dimensions, the index has %d", len(v), dim)
	}
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return clearance.Invalid(field, "contains NaN or infinity")
		}
	}
	return nil
}

// beginRead takes the shared lock; on success the caller must RUnlock.
func (s *Store) beginRead(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	return nil
}

// maybeCompact writes a snapshot once the log is both big and mostly garbage.
// Readers keep running; writers wait (the caller holds writeMu).
func (s *Store) maybeCompact() {
	d := s.disk
	if d == nil || d.walBytes < s.cfg.CompactBytes {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if d.walBytes < 2*s.ix.bytes {
		return
	}
	if err := d.snapshot(s.ix); err != nil {
		s.log.Error("embedded store: compaction failed; the log keeps growing", "err", err)
		return
	}
	s.log.Info("embedded store: compacted", "seq", d.seq, "tickets", len(s.ix.tickets), "chunks", s.ix.chunks)
}

// Upsert implements retrieval.Store.
func (s *Store) Upsert(ctx context.Context, t retrieval.Ticket, chunks []retrieval.Chunk) error {
	u, err := s.validate(t, chunks)
	if err != nil {
		return err
	}
	if !u.t.UpdatedAt.IsZero() {
		u.t.UpdatedAt = u.t.UpdatedAt.UTC()
	}
	o := &op{kind: opUpsert, id: t.ID, project: t.Project, u: u}
	if s.disk != nil { // encoded here, outside the writer lock
		o.record = encodeUpsert(u)
	}
	return s.commit(ctx, o)
}

// Delete implements retrieval.Store.
func (s *Store) Delete(ctx context.Context, ticketID string) error {
	return s.commit(ctx, &op{kind: opDelete, id: ticketID, record: encodeDelete(ticketID)})
}

// Move implements retrieval.Store.
func (s *Store) Move(ctx context.Context, ticketID, project string) error {
	return s.commit(ctx, &op{kind: opMove, id: ticketID, project: project, record: encodeMove(ticketID, project)})
}

// Get implements retrieval.Store.
func (s *Store) Get(ctx context.Context, ticketID string) (retrieval.Ticket, error) {
	if err := s.beginRead(ctx); err != nil {
		return retrieval.Ticket{}, err
	}
	defer s.mu.RUnlock()
	tk := s.ix.tickets[ticketID]
	if tk == nil {
		return retrieval.Ticket{}, fmt.Errorf("get %q: %w", ticketID, retrieval.ErrNotFound)
	}
	return tk.Ticket, nil
}

// Search implements retrieval.Store.
func (s *Store) Search(ctx context.Context, r retrieval.SearchRequest) (retrieval.SearchResult, error) {
	hits, err := s.search(ctx, r)
	if err != nil {
		return retrieval.SearchResult{}, err
	}
	// Every allowed row is scored (the int8 pass only skips rows its error bound
	// proves cannot enter the top k), so every answer is exact.
	return retrieval.SearchResult{Hits: hits, Plan: retrieval.PlanExact, Exact: true}, nil
}

func (s *Store) search(ctx context.Context, r retrieval.SearchRequest) ([]retrieval.Hit, error) {
	if err := checkVector("vector", r.Vector, s.cfg.Meta.Dim); err != nil {
		return nil, err
	}
	if r.K < 1 {
		return nil, clearance.Invalid("k", "must be at least 1, got %d", r.K)
	}
	if r.Offset < 0 {
		return nil, clearance.Invalid("offset", "must not be negative, got %d", r.Offset)
	}
	if err := s.beginRead(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	segs, rows := s.ix.resolve(r.Filter)
	if r.Offset >= rows {
		return nil, nil
	}
	m := min(rows, r.K+r.Offset)
	cands := s.scan.search(r.Vector, segs, rows, m, s.cfg.Quantize && rows >= s.scan.minQuant)
	if r.Offset >= len(cands) {
		return nil, nil
	}
	cands = cands[r.Offset:]
	hits := make([]retrieval.Hit, len(cands))
	for i, c := range cands {
		hits[i] = retrieval.Hit{
			TicketID: c.t.ID, Tenant: c.t.Tenant, Project: c.t.Project, Title: c.t.Title,
			Ordinal: int(c.t.ords[c.k]), Text: c.t.texts[c.k], Score: c.score,
		}
	}
	return hits, nil
}

// Count implements retrieval.Store.
func (s *Store) Count(ctx context.Context, f retrieval.Filter) (int, error) {
	if err := s.beginRead(ctx); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	_, rows := s.ix.resolve(f)
	return rows, nil
}

// Tickets implements retrieval.Store. It copies the metadata under the read lock
// and yields outside it, so the caller may write to the store while iterating.
func (s *Store) Tickets(ctx context.Context) iter.Seq2[retrieval.TicketRef, error] {
	return func(yield func(retrieval.TicketRef, error) bool) {
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			yield(retrieval.TicketRef{}, errClosed)
			return
		}
		refs := make([]retrieval.TicketRef, 0, len(s.ix.tickets))
		for _, tk := range s.ix.tickets {
			refs = append(refs, retrieval.TicketRef{
				ID: tk.ID, Tenant: tk.Tenant, Project: tk.Project,
				UpdatedAt: tk.UpdatedAt, ContentHash: tk.ContentHash, Chunks: len(tk.ords),
			})
		}
		s.mu.RUnlock()
		for _, r := range refs {
			if err := ctx.Err(); err != nil {
				yield(retrieval.TicketRef{}, err)
				return
			}
			if !yield(r, nil) {
				return
			}
		}
	}
}

// Stats implements retrieval.Store.
func (s *Store) Stats(ctx context.Context) (retrieval.Stats, error) {
	if err := s.beginRead(ctx); err != nil {
		return retrieval.Stats{}, err
	}
	defer s.mu.RUnlock()
	return retrieval.Stats{
		Tickets: len(s.ix.tickets), Chunks: s.ix.chunks,
		Dim: s.cfg.Meta.Dim, Model: s.cfg.Meta.Model, Backend: "embedded",
	}, nil
}

// Compact writes a snapshot now and truncates the log (no-op in memory).
func (s *Store) Compact(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closed {
		return errClosed
	}
	if s.disk == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.disk.snapshot(s.ix)
}

// Close implements retrieval.Store. It syncs the log and releases the data
// directory; calling it again is a no-op.
func (s *Store) Close() error {
	s.sendMu.Lock()
	if !s.stopping {
		s.stopping = true
		close(s.ops) // the committer finishes what is queued, then exits
	}
	s.sendMu.Unlock()
	<-s.committerDone
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.disk != nil {
		return s.disk.close()
	}
	return nil
}
