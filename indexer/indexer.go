package indexer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/retrieval"
)

// Config configures an Indexer.
type Config struct {
	Store    retrieval.Store
	Embedder retrieval.Embedder
	// State keeps watermarks between runs; nil reads every source from the start.
	State State
	// Chunker shapes chunks (zero value: the defaults).
	Chunker Chunker
	// Workers is how many sub-batches are chunked, embedded and written at once
	// (default GOMAXPROCS). Rows are sharded by ticket id, so two versions of
	// one ticket are always applied in source order.
	Workers int
	// EmbedBatch is the number of texts per Embedder.Embed call (default 64).
	EmbedBatch int
	// Full makes a run a full sync: the source is read from the start and every
	// indexed ticket it no longer has is deleted.
	Full bool
	// Logger receives per-row failures and the summary; nil discards.
	Logger *slog.Logger
	// Progress, when set, is called after each batch is committed.
	Progress func(Summary)
	// MaxFailures caps the failures kept in the Summary (default 1000); all are
	// counted and logged.
	MaxFailures int
	// Tuples, when set, keeps each ticket's ticket#project tuple in step with the
	// index: written before a new or moved ticket reaches the index; on a delete
	// every tuple whose object is the ticket is removed before the ticket leaves
	// the index (PurgeTicket). Set it when clearance owns the tuples (the
	// embedded engine); with a remote engine the source system writes them.
	Tuples TupleWriter
	// Observer, when set, is told about each run's end and each saved
	// watermark (metrics).
	Observer RunObserver
}

// RunObserver watches an Indexer's runs.
type RunObserver interface {
	// RunDone is called once per Run with its summary and error.
	RunDone(sum Summary, err error)
	// WatermarkSaved is called after a source's watermark was saved.
	WatermarkSaved()
}

// TupleWriter reads and writes relationship tuples (authz.Engine's Read and
// Write).
type TupleWriter interface {
	Write(ctx context.Context, writes, deletes []authz.Tuple) error
	Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error]
}

// PurgePage bounds the tuples one PurgeTicket write deletes (OpenFGA's default
// per-write limit is 100).
const PurgePage = 100

// PurgeTicket deletes every stored tuple whose object is ticket:<id> (its
// project, shares, blocks and any relation a model adds), in pages of at most
// PurgePage, so that a later ticket with the same id starts with no audience
// (SPEC invariant 9). Blocks go last: until the other tuples are gone a block
// still holds, so a purge cut short by a crash only ever narrows access. It
// returns how many tuples were deleted; run it again to finish a cut-short purge.
func PurgeTicket(ctx context.Context, e TupleWriter, id string) (int, error) {
	object := "ticket:" + id
	deleted := 0
	for _, blocks := range []bool{false, true} {
		for {
			page, err := readPage(ctx, e, object, blocks)
			if err != nil {
				return deleted, err
			}
			if len(page) == 0 {
				break
			}
			if err := e.Write(ctx, nil, page); err != nil {
				return deleted, fmt.Errorf("purge %s tuples: %w", object, err)
			}
			deleted += len(page)
		}
	}
	return deleted, nil
}

// readPage reads up to PurgePage tuples of object: the blocks, or all others.
func readPage(ctx context.Context, e TupleWriter, object string, blocks bool) ([]authz.Tuple, error) {
	var page []authz.Tuple
	for t, err := range e.Read(ctx, authz.TupleFilter{Object: object}) {
		if err != nil {
			return nil, fmt.Errorf("read %s tuples: %w", object, err)
		}
		if t.Object != object || (t.Relation == "blocked") != blocks {
			continue
		}
		// Deletes match by user, relation and object; the condition is not part of the key.
		page = append(page, authz.Tuple{User: t.User, Relation: t.Relation, Object: t.Object})
		if len(page) == PurgePage {
			break
		}
	}
	return page, nil
}

// purge removes a ticket's tuples (no-op without a TupleWriter).
func (ix *Indexer) purge(ctx context.Context, id string) error {
	if ix.cfg.Tuples == nil {
		return nil
	}
	_, err := PurgeTicket(ctx, ix.cfg.Tuples, id)
	return err
}

// projectTuple is the ticket#project tuple of a ticket in a project.
func projectTuple(ticketID, project string) authz.Tuple {
	return authz.Tuple{User: "project:" + project, Relation: "project", Object: "ticket:" + ticketID}
}

// tupleChange records the ticket#project change of one ticket: the tuple to write
// (new project) and, on a move, the one to delete.
func tupleChange(id, oldProject string, found bool, newProject string) (writes, deletes []authz.Tuple) {
	writes = []authz.Tuple{projectTuple(id, newProject)}
	if found && oldProject != "" && oldProject != newProject {
		deletes = []authz.Tuple{projectTuple(id, oldProject)}
	}
	return writes, deletes
}

// writeTuples applies pending tuple changes (no-op without a TupleWriter).
func (ix *Indexer) writeTuples(ctx context.Context, writes, deletes []authz.Tuple) error {
	if ix.cfg.Tuples == nil || len(writes)+len(deletes) == 0 {
		return nil
	}
	if err := ix.cfg.Tuples.Write(ctx, writes, deletes); err != nil {
		return fmt.Errorf("write ticket#project tuples: %w", err)
	}
	return nil
}

// Syncer is implemented by stores that acknowledge writes before they are on
// stable storage; the indexer calls Sync before it saves a watermark.
type Syncer interface {
	Sync(ctx context.Context) error
}

// Indexer syncs sources into a store.
type Indexer struct {
	cfg Config
	log *slog.Logger
}

// New returns an Indexer.
func New(cfg Config) (*Indexer, error) {
	if cfg.Store == nil || cfg.Embedder == nil {
		return nil, errors.New("indexer: a store and an embedder are required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.EmbedBatch <= 0 {
		cfg.EmbedBatch = 64
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 1000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Indexer{cfg: cfg, log: log}, nil
}

// Summary counts what a run did.
type Summary struct {
	Source string `json:"source"`
	// Seen rows, including failed ones.
	Seen int `json:"seen"`
	// Embedded tickets (new or changed), and the chunks written for them.
	Embedded int `json:"embedded"`
	Chunks   int `json:"chunks"`
	// Unchanged tickets skipped by their content hash (and deletions of tickets
	// that were not indexed).
	Unchanged int `json:"unchanged"`
	Deleted   int `json:"deleted"`
	Moved     int `json:"moved"`
	Failed    int `json:"failed"`
	// Failures lists the first failed rows.
	Failures []Failure     `json:"failures,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	// Note says why a run sent or wrote nothing, when that has a reason worth
	// telling (the source has not changed since the saved progress).
	Note string `json:"note,omitempty"`
}

// ChunksPerSecond is the embedding throughput of the run.
func (s Summary) ChunksPerSecond() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Chunks) / s.Duration.Seconds()
}

// Failure is a row that was not indexed.
type Failure struct {
	Ref    string `json:"ref"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason"`
}

func (f Failure) String() string {
	if f.ID != "" {
		return fmt.Sprintf("%s (id %s): %s", f.Ref, f.ID, f.Reason)
	}
	return f.Ref + ": " + f.Reason
}

// tally is the run's Summary under a lock.
type tally struct {
	mu  sync.Mutex
	s   Summary
	max int
	log *slog.Logger
}

func (t *tally) add(fn func(*Summary)) {
	t.mu.Lock()
	fn(&t.s)
	t.mu.Unlock()
}

func (t *tally) fail(f Failure) {
	t.log.Warn("row failed", "ref", f.Ref, "id", f.ID, "reason", f.Reason)
	t.add(func(s *Summary) {
		s.Failed++
		if len(s.Failures) < t.max {
			s.Failures = append(s.Failures, f)
		}
	})
}

func (t *tally) snapshot(start time.Time) Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.s
	s.Failures = append([]Failure(nil), s.Failures...)
	s.Duration = time.Since(start)
	return s
}

// job is one batch in flight: its shards finish in any order, the committer
// saves watermarks in batch order.
type job struct {
	seq       int
	watermark string
	mu        sync.Mutex
	pending   int
}

type shard struct {
	job  *job
	rows []SourceRow
}

// Run syncs src into the store once and returns what it did. Row failures are
// counted in the Summary, not returned; the error is for the run itself (the
// source, the store, the embedder or the state failed, or ctx ended), in which
// case the watermark stays at the last batch fully written.
func (ix *Indexer) Run(ctx context.Context, src Source) (sum Summary, err error) {
	if o := ix.cfg.Observer; o != nil {
		defer func() { o.RunDone(sum, err) }()
	}
	start := time.Now()
	t := &tally{s: Summary{Source: src.Name()}, max: ix.cfg.MaxFailures, log: ix.log}
	since := ""
	if !ix.cfg.Full && ix.cfg.State != nil {
		var err error
		if since, err = ix.cfg.State.Load(ctx, src.Name()); err != nil {
			return t.snapshot(start), err
		}
	}
	var known *refs          // full sync: the index's metadata, kept current
	var seen map[string]bool // full sync: ids the source still has
	if ix.cfg.Full {
		known, seen = &refs{m: map[string]retrieval.TicketRef{}}, map[string]bool{}
		for ref, err := range ix.cfg.Store.Tickets(ctx) {
			if err != nil {
				return t.snapshot(start), fmt.Errorf("list indexed tickets: %w", err)
			}
			known.m[ref.ID] = ref
		}
	}
	ix.log.Info("index run started", "source", src.Name(), "full", ix.cfg.Full, "resume", since != "")

	g, gctx := errgroup.WithContext(ctx)
	w := ix.cfg.Workers
	shards := make([]chan shard, w)
	for i := range shards {
		shards[i] = make(chan shard, 1) // backpressure: the reader waits for busy workers
	}
	done := make(chan *job, 2*w)
	var producers sync.WaitGroup
	producers.Add(1 + w)

	finish := func(j *job) error {
		select {
		case done <- j:
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	}
	g.Go(func() error { // reader
		defer producers.Done()
		defer func() {
			for _, c := range shards {
				close(c)
			}
		}()
		seq := 0
		for b, err := range src.Read(gctx, since) {
			if err != nil {
				return fmt.Errorf("read %s: %w", src.Name(), err)
			}
			j := &job{seq: seq, watermark: b.Watermark}
			seq++
			parts := make([][]SourceRow, w)
			for _, r := range b.Rows {
				t.add(func(s *Summary) { s.Seen++ })
				if seen != nil && ValidID(r.ID) {
					// A row that fails validation still exists at the source:
					// a full sync must not delete its indexed version.
					seen[r.ID] = true
				}
				if err := r.Err; err == nil {
					r.Err = r.Validate("")
				}
				if r.Err != nil {
					t.fail(Failure{Ref: r.Ref, ID: r.ID, Reason: r.Err.Error()})
					continue
				}
				h := fnv.New32a()
				h.Write([]byte(r.ID))
				k := int(h.Sum32() % uint32(w))
				parts[k] = append(parts[k], r)
			}
			for _, p := range parts {
				if len(p) > 0 {
					j.pending++
				}
			}
			if j.pending == 0 {
				if err := finish(j); err != nil {
					return err
				}
				continue
			}
			for k, p := range parts {
				if len(p) == 0 {
					continue
				}
				select {
				case shards[k] <- shard{job: j, rows: p}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		}
		return nil
	})
	for k := range w {
		g.Go(func() error { // worker
			defer producers.Done()
			return ix.work(gctx, shards[k], known, t, finish)
		})
	}
	go func() {
		producers.Wait()
		close(done)
	}()
	g.Go(func() error { // committer: watermarks in batch order
		waiting := map[int]*job{}
		next := 0
		for j := range done {
			waiting[j.seq] = j
			for {
				j, ok := waiting[next]
				if !ok {
					break
				}
				delete(waiting, next)
				next++
				if err := gctx.Err(); err != nil {
					// The run ends: a state that ignores the context must not
					// save a watermark the run may not have reached.
					return err
				}
				if err := ix.commit(gctx, src.Name(), j.watermark); err != nil {
					return err
				}
				if ix.cfg.Progress != nil {
					ix.cfg.Progress(t.snapshot(start))
				}
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return t.snapshot(start), err
	}
	if ix.cfg.Full {
		if err := ix.deleteMissing(ctx, known, seen, t); err != nil {
			return t.snapshot(start), err
		}
	}
	sum = t.snapshot(start)
	ix.log.Info("index run finished", "source", sum.Source, "seen", sum.Seen, "embedded", sum.Embedded,
		"unchanged", sum.Unchanged, "deleted", sum.Deleted, "moved", sum.Moved, "failed", sum.Failed,
		"chunks", sum.Chunks, "chunks_per_s", int(sum.ChunksPerSecond()), "duration", sum.Duration.Round(time.Millisecond))
	return sum, nil
}

func (ix *Indexer) commit(ctx context.Context, source, watermark string) error {
	if ix.cfg.State == nil || watermark == "" {
		return nil
	}
	if s, ok := ix.cfg.Store.(Syncer); ok {
		if err := s.Sync(ctx); err != nil {
			return fmt.Errorf("sync store: %w", err)
		}
	}
	if err := ix.cfg.State.Save(ctx, source, watermark); err != nil {
		return fmt.Errorf("save watermark: %w", err)
	}
	if ix.cfg.Observer != nil {
		ix.cfg.Observer.WatermarkSaved()
	}
	return nil
}

// deleteMissing removes the tickets a full sync did not see.
func (ix *Indexer) deleteMissing(ctx context.Context, known *refs, seen map[string]bool, t *tally) error {
	for id := range known.m {
		if seen[id] {
			continue
		}
		// Tuples first: a crash in between leaves an indexed ticket nobody may
		// view, never tuples that a reused id would inherit.
		if err := ix.purge(ctx, id); err != nil {
			return err
		}
		if err := ix.cfg.Store.Delete(ctx, id); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
		t.add(func(s *Summary) { s.Deleted++ })
	}
	return nil
}

// Pipelining: a worker prepares a shard (looks up its tickets, writes their
// tuples, chunks and embeds them) while the upserts of its previous shards are
// being written, instead of waiting for each shard's writes before reading the
// next (a 100k-ticket pgvector load spent most of its time so). Bounds:
// shardDepth shards per worker in flight, inflightChunks chunks of upserts per
// worker in flight (their vectors and texts are what a run holds in memory).
const (
	shardDepth     = 2
	inflightChunks = 2048
)

// flight is a shard whose upserts may still be in flight.
type flight struct {
	job    *job
	ids    []string // ids the shard upserts
	writes *errgroup.Group
}

// work applies the shards of one worker, in order. A shard's part of its batch
// is done (and the watermark may pass it) only when all its writes returned.
// A shard that names a ticket still being written by an earlier shard waits
// for the earlier shards first, so two versions of a ticket are applied, and
// compared, in source order.
func (ix *Indexer) work(ctx context.Context, in <-chan shard, known *refs, t *tally, finish func(*job) error) (err error) {
	var window []flight
	busy := map[string]int{} // id -> shards of the window upserting it
	sem := semaphore.NewWeighted(inflightChunks)
	defer func() {
		for _, f := range window {
			_ = f.writes.Wait() // no write outlives the run
		}
	}()
	land := func() error {
		f := window[0]
		window = window[1:]
		werr := f.writes.Wait()
		for _, id := range f.ids {
			if busy[id]--; busy[id] == 0 {
				delete(busy, id)
			}
		}
		if werr != nil {
			return werr
		}
		f.job.mu.Lock()
		f.job.pending--
		last := f.job.pending == 0
		f.job.mu.Unlock()
		if last {
			return finish(f.job)
		}
		return nil
	}
	for sh := range in {
		overlap := false
		for _, r := range sh.rows {
			if busy[r.ID] > 0 {
				overlap = true
				break
			}
		}
		for len(window) > 0 && (overlap || len(window) >= shardDepth) {
			if err := land(); err != nil {
				return err
			}
		}
		writes, ids, err := ix.apply(ctx, sh.rows, known, t, sem)
		if err != nil {
			return err
		}
		for _, id := range ids {
			busy[id]++
		}
		window = append(window, flight{job: sh.job, ids: ids, writes: writes})
	}
	for len(window) > 0 {
		if err := land(); err != nil {
			return err
		}
	}
	return nil
}

// pendingTicket is a ticket to embed and its chunk texts.
type pendingTicket struct {
	t      retrieval.Ticket
	chunks []string
}

// apply writes one shard's rows: deletes, moves and skips at once, and the
// upserts of new and changed tickets in writes, which the caller waits for;
// ids are the tickets upserted. Only store, embedder and context errors are
// returned; they end the run (the writes already started are waited for).
func (ix *Indexer) apply(ctx context.Context, rows []SourceRow, known *refs, t *tally, sem *semaphore.Weighted) (_ *errgroup.Group, ids []string, err error) {
	if known == nil {
		// An incremental run asks the store about each row; a store on a
		// server answers for the whole shard in one round trip instead of one
		// per row (100k rows: most of a pgvector load's time).
		if known, err = ix.prefetch(ctx, rows); err != nil {
			return nil, nil, err
		}
	}
	// Upserts run in the background while the next group is embedded (and,
	// see work, the next shard prepared), at most inflightChunks chunks at a
	// time (backpressure from the store).
	writes, wctx := errgroup.WithContext(ctx)
	defer func() {
		if err != nil {
			_ = writes.Wait() // no write outlives the run
		}
	}()
	// A segment: the tickets to embed since the last settle, and their
	// ticket#project changes, written in one engine call before any of them
	// reaches the index.
	var seg []pendingTicket
	var tupleWrites, tupleDeletes []authz.Tuple
	pending := map[string]bool{} // ids of the segment or being written
	flush := func() error {
		if err := ix.writeTuples(ctx, tupleWrites, tupleDeletes); err != nil {
			return err
		}
		tupleWrites, tupleDeletes = tupleWrites[:0], tupleDeletes[:0]
		for len(seg) > 0 {
			n, texts := 0, 0
			for n < len(seg) && (n == 0 || texts+len(seg[n].chunks) <= ix.cfg.EmbedBatch) {
				texts += len(seg[n].chunks)
				n++
			}
			if err := ix.embedAndWrite(ctx, wctx, writes, sem, seg[:n], known, t); err != nil {
				return err
			}
			seg = seg[n:]
		}
		seg = nil
		return nil
	}
	for _, r := range rows {
		if pending[r.ID] {
			// A later version of a ticket not yet written: write the first so
			// the second is compared with it, in order.
			if err := flush(); err != nil {
				return nil, nil, err
			}
			if err := writes.Wait(); err != nil {
				return nil, nil, err
			}
			clear(pending)
			writes, wctx = errgroup.WithContext(ctx)
		}
		if err := wctx.Err(); err != nil {
			// A write failed: its error, not the cancellation; else the run's
			// context ended, and the shard is not done.
			return nil, nil, cmp.Or(writes.Wait(), err)
		}
		old, found, err := ix.lookup(ctx, r.ID, known)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case r.Deleted:
			// The source says the ticket is gone: its tuples go first, also when
			// it is not indexed (an earlier delete cut short after the index,
			// or tuples written ahead of a ticket that never came).
			if err := ix.purge(ctx, r.ID); err != nil {
				return nil, nil, err
			}
			if !found {
				t.add(func(s *Summary) { s.Unchanged++ })
				continue
			}
			if err := ix.cfg.Store.Delete(ctx, r.ID); err != nil {
				return nil, nil, fmt.Errorf("delete %s: %w", r.ID, err)
			}
			known.del(r.ID)
			t.add(func(s *Summary) { s.Deleted++ })
			continue
		}
		tk := r.Ticket
		tk.ContentHash = ContentHash(tk)
		if tk.UpdatedAt.IsZero() {
			tk.UpdatedAt = time.Now().UTC()
		}
		if found && old.Tenant == tk.Tenant && sameContent(old.ContentHash, tk.ContentHash) {
			if old.Project == tk.Project {
				t.add(func(s *Summary) { s.Unchanged++ })
				continue
			}
			w, d := tupleChange(tk.ID, old.Project, found, tk.Project)
			if err := ix.writeTuples(ctx, w, d); err != nil {
				return nil, nil, err
			}
			if err := ix.cfg.Store.Move(ctx, tk.ID, tk.Project); err != nil {
				return nil, nil, fmt.Errorf("move %s: %w", tk.ID, err)
			}
			old.Project = tk.Project
			known.set(old)
			t.add(func(s *Summary) { s.Moved++ })
			continue
		}
		if ix.cfg.Tuples != nil {
			w, d := tupleChange(tk.ID, old.Project, found, tk.Project)
			tupleWrites, tupleDeletes = append(tupleWrites, w...), append(tupleDeletes, d...)
		}
		seg = append(seg, pendingTicket{t: tk, chunks: ix.cfg.Chunker.Chunk(tk)})
		pending[tk.ID] = true
		ids = append(ids, tk.ID)
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	return writes, ids, nil
}

// RefLookup is implemented by stores that read many tickets' metadata in one
// call (pgvector); the indexer uses it for each shard of an incremental run.
type RefLookup interface {
	// Refs returns the metadata of the ids that are indexed; missing ids are
	// left out.
	Refs(ctx context.Context, ids []string) ([]retrieval.TicketRef, error)
}

// prefetch reads the indexed metadata of rows' tickets when the store can do it
// in one call, else returns nil (lookup then asks per row). The result is the
// shard's own view, kept current by its writes like a full sync's.
func (ix *Indexer) prefetch(ctx context.Context, rows []SourceRow) (*refs, error) {
	rl, ok := ix.cfg.Store.(RefLookup)
	if !ok || len(rows) == 0 {
		return nil, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	got, err := rl.Refs(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("look up indexed tickets: %w", err)
	}
	known := &refs{m: make(map[string]retrieval.TicketRef, len(got))}
	for _, ref := range got {
		known.m[ref.ID] = ref
	}
	return known, nil
}

// refs is a full sync's view of the index metadata, updated as the run writes.
// Workers own disjoint ids, so the lock only guards the map itself.
type refs struct {
	mu sync.Mutex
	m  map[string]retrieval.TicketRef
}

func (r *refs) get(id string) (retrieval.TicketRef, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref, ok := r.m[id]
	return ref, ok
}

// set and del are no-ops on a nil *refs (incremental runs ask the store).
func (r *refs) set(ref retrieval.TicketRef) {
	if r != nil {
		r.mu.Lock()
		r.m[ref.ID] = ref
		r.mu.Unlock()
	}
}

func (r *refs) del(id string) {
	if r != nil {
		r.mu.Lock()
		delete(r.m, id)
		r.mu.Unlock()
	}
}

func countTexts(ps []pendingTicket) int {
	n := 0
	for _, p := range ps {
		n += len(p.chunks)
	}
	return n
}

// lookup finds a ticket's indexed metadata: from the snapshot taken by a full
// sync, else from the store.
func (ix *Indexer) lookup(ctx context.Context, id string, known *refs) (retrieval.TicketRef, bool, error) {
	if known != nil {
		ref, ok := known.get(id)
		return ref, ok, nil
	}
	old, err := ix.cfg.Store.Get(ctx, id)
	if errors.Is(err, retrieval.ErrNotFound) {
		return retrieval.TicketRef{}, false, nil
	}
	if err != nil {
		return retrieval.TicketRef{}, false, fmt.Errorf("get %s: %w", id, err)
	}
	return retrieval.TicketRef{ID: old.ID, Tenant: old.Tenant, Project: old.Project, ContentHash: old.ContentHash}, true, nil
}

// embedAndWrite embeds the chunks of ps (title with every chunk) in one call
// and starts the upsert of each ticket with all its chunks in writes, once sem
// has room for its chunks (a ticket with more chunks than the whole bound
// waits for all of it).
func (ix *Indexer) embedAndWrite(ctx, wctx context.Context, writes *errgroup.Group, sem *semaphore.Weighted, ps []pendingTicket, known *refs, t *tally) error {
	if len(ps) == 0 {
		return nil
	}
	texts := make([]string, 0, countTexts(ps))
	for _, p := range ps {
		for _, c := range p.chunks {
			texts = append(texts, EmbedText(p.t.Title, c))
		}
	}
	vecs, err := ix.cfg.Embedder.Embed(ctx, texts)
	if err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	if len(vecs) != len(texts) {
		return fmt.Errorf("embed: %d vectors for %d texts", len(vecs), len(texts))
	}
	// The upserts go to the store at once: a store with group commit (the
	// embedded store) makes them share one fsync. Each ticket is still its own
	// atomic write, and ids in flight are distinct.
	i := 0
	for _, p := range ps {
		chunks := make([]retrieval.Chunk, len(p.chunks))
		for k, c := range p.chunks {
			chunks[k] = retrieval.Chunk{Ordinal: k, Text: c, Vector: vecs[i]}
			i++
		}
		w := min(int64(len(chunks)), inflightChunks)
		if err := sem.Acquire(wctx, w); err != nil {
			if werr := writes.Wait(); werr != nil {
				return werr // a write failed: its error, not the cancellation
			}
			return fmt.Errorf("upsert %s: %w", p.t.ID, err)
		}
		writes.Go(func() error {
			defer sem.Release(w)
			if err := ix.cfg.Store.Upsert(wctx, p.t, chunks); err != nil {
				return fmt.Errorf("upsert %s: %w", p.t.ID, err)
			}
			known.set(retrieval.TicketRef{ID: p.t.ID, Tenant: p.t.Tenant, Project: p.t.Project, ContentHash: p.t.ContentHash, Chunks: len(chunks)})
			t.add(func(s *Summary) { s.Embedded++; s.Chunks += len(chunks) })
			return nil
		})
	}
	return nil
}
