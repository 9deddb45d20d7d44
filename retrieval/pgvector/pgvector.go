// Package pgvector is a retrieval.Store on PostgreSQL with the pgvector extension.
//
// Chunks live in one table with their tenant and project copied from the ticket,
// under btree indexes on (tenant, project) and ticket id and an HNSW index on the
// embedding (inner product; vectors are unit length, so it equals cosine). A
// search counts the rows its filter allows first: when they are few (Config.
// ExactThreshold) it ranks them all exactly through the btree indexes; otherwise it
// walks the HNSW index with iterative scan and re-sorts the candidates by exact
// distance. PostgreSQL's own planner cannot be left to choose: under a selective
// filter plain HNSW returns a fraction of k, and iterative scan over a few allowed
// rows reads much of the graph.
//
// Every write is one transaction; concurrent upserts share one (group commit).
// A bulk load drops the HNSW index and builds it afterwards, or defers it while
// no tenant is large enough for the HNSW plan; while it is missing or invalid,
// searches rank exactly (bulk.go). pgvector before 0.8.3 can corrupt an HNSW
// index when VACUUM runs beside concurrent writes (docs/retrieval.md).
package pgvector

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	pgv "github.com/pgvector/pgvector-go"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
)

// Plan is how a search reads the index.
type Plan int

const (
	// PlanAuto picks PlanExact when the filter allows at most ExactThreshold chunks
	// and PlanHNSW otherwise.
	PlanAuto Plan = iota
	// PlanExact ranks every allowed chunk by exact distance (recall 1).
	PlanExact
	// PlanHNSW walks the HNSW index with iterative scan (approximate).
	PlanHNSW
)

func (p Plan) String() string {
	switch p {
	case PlanExact:
		return retrieval.PlanExact
	case PlanHNSW:
		return retrieval.PlanHNSW
	}
	return "auto"
}

// DefaultExactThreshold is Config.ExactThreshold's default.
const DefaultExactThreshold = 300000

// Config configures the store. Only DatabaseURL and Meta are required.
type Config struct {
	// DatabaseURL is a PostgreSQL connection string; the vector extension must be
	// installed on the server (the store runs CREATE EXTENSION IF NOT EXISTS).
	DatabaseURL string
	// Meta is the embedding space; a database indexed with another is refused
	// with retrieval.ErrIndexMismatch.
	Meta retrieval.IndexMeta
	// ExactThreshold is the largest number of allowed chunks searched exactly
	// (default 300,000: a whole tenant of the 1M bench corpus, 250,000 chunks,
	// scans in about 0.3-0.6 s on 2 cores). Above it the HNSW plan answers
	// approximately (reported as such); on the bench's hashing-embedder corpus no
	// HNSW setting reached recall@10 0.99 (docs/benchmarks.md), so the default
	// favours exact answers over the latency crossover near 10,000.
	ExactThreshold int
	// ExactWorkers is max_parallel_workers_per_gather for the exact plan
	// (default 2; -1 for none): PostgreSQL splits a large allowed set's scan
	// over that many background workers besides the backend, when the planner
	// finds it worth it. The server's max_parallel_workers caps it.
	ExactWorkers int
	// Plan forces a search path; PlanAuto (the default) chooses by row count.
	Plan Plan
	// EfSearch is hnsw.ef_search, the candidate list size (default 200, at least
	// offset+k up to pgvector's limit of 1000).
	EfSearch int
	// MaxScanTuples is hnsw.max_scan_tuples, how many index tuples an iterative
	// scan may visit before it gives up (default 100,000).
	MaxScanTuples int
	// Writers bounds the transactions writing upserts at a time (default 2);
	// concurrent Upsert calls beyond it wait and are written together.
	Writers int
	// BatchChunks bounds the chunks one upsert transaction writes (default
	// 2,000; a single larger ticket still goes alone).
	BatchChunks int
	// BuildMemoryMB is maintenance_work_mem for index builds (default 1024): the
	// graph is built in memory as long as it fits, several times faster than
	// once it spills.
	BuildMemoryMB int
	// BuildWorkers is max_parallel_maintenance_workers for index builds (default
	// 2; the server's max_parallel_workers still caps it).
	BuildWorkers int
	// BuildTimeout bounds one index build (default 2h).
	BuildTimeout time.Duration
	// MaxConns caps the connection pool (default: pgxpool's, max(4, CPUs)).
	MaxConns int32
	// Timeout bounds each operation that has no earlier context deadline (default 30s).
	Timeout time.Duration
	// Logger receives debug lines about plans and migrations (default: discard).
	Logger *slog.Logger

	// ReadDatabaseURL, when set, names a streaming replica of DatabaseURL that
	// takes Search and Count while it is at most MaxReplicaLag behind
	// (replica.go). Writes, Get and reconciliation stay on the primary.
	ReadDatabaseURL string
	// MaxReplicaLag is the most staleness a search may read (default 5s).
	MaxReplicaLag time.Duration
	// ReplicaProbeInterval is how often the replica's staleness is measured
	// (default 1s).
	ReplicaProbeInterval time.Duration
}

// Store is a pgvector-backed retrieval.Store. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	replica *replica // nil without Config.ReadDatabaseURL
	cfg     Config
	log     *slog.Logger
	group   group

	// goIDFs makes every lexical search score a second time with Go's IDFs,
	// the path taken when PostgreSQL's ln and Go's disagree (tests only).
	goIDFs bool

	bulkMu sync.Mutex
	bulk   *bulkState // the connection holding the bulk-load lock

	// lexValidAt: when this store last saw every lexical GIN index valid (unix
	// nanoseconds; 0: not since it started, or since its own bulk load dropped
	// them). A lexical search looks again once it is lexRecheck old, so a
	// replica notices indexes another replica's load dropped and never built
	// (it died), and starts the build (bulk.go).
	lexValidAt atomic.Int64
	lexRecheck time.Duration

	// Background index builds started by searches (bulk.go).
	building atomic.Bool
	bgCtx    context.Context
	bgStop   context.CancelFunc
	bg       sync.WaitGroup
}

var _ retrieval.Store = (*Store)(nil)

// Open connects, applies the schema migrations, and checks (or, on an empty
// database, records) the embedding model and dimension.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.DatabaseURL == "" {
		return nil, clearance.Invalid("database_url", "must not be empty")
	}
	if cfg.Meta.Model == "" {
		return nil, clearance.Invalid("meta.model", "must not be empty")
	}
	if cfg.Meta.Dim <= 0 || cfg.Meta.Dim > 16000 {
		return nil, clearance.Invalid("meta.dim", "must be between 1 and 16000, got %d", cfg.Meta.Dim)
	}
	if cfg.ExactThreshold <= 0 {
		cfg.ExactThreshold = DefaultExactThreshold
	}
	switch {
	case cfg.ExactWorkers == 0:
		cfg.ExactWorkers = 2
	case cfg.ExactWorkers < 0:
		cfg.ExactWorkers = 0
	}
	cfg.ExactWorkers = min(cfg.ExactWorkers, 64)
	if cfg.EfSearch <= 0 {
		cfg.EfSearch = 200
	}
	cfg.EfSearch = min(cfg.EfSearch, 1000)
	if cfg.MaxScanTuples <= 0 {
		cfg.MaxScanTuples = 100000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 2
	}
	if cfg.BatchChunks <= 0 {
		cfg.BatchChunks = 2000
	}
	if cfg.MaxReplicaLag <= 0 {
		cfg.MaxReplicaLag = 5 * time.Second
	}
	if cfg.ReplicaProbeInterval <= 0 {
		cfg.ReplicaProbeInterval = time.Second
	}
	if cfg.BuildMemoryMB <= 0 {
		cfg.BuildMemoryMB = 1024
	}
	if cfg.BuildWorkers <= 0 {
		cfg.BuildWorkers = 2
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = 2 * time.Hour
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, clearance.Invalid("database_url", "%v", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	// JIT compiles any query whose estimated cost passes jit_above_cost; the HNSW
	// path's enable_sort = off inflates estimates, and compiling took 0.5 s of a
	// 5 ms search in the benchmark. Vector queries gain nothing from it.
	pcfg.ConnConfig.RuntimeParams["jit"] = "off"
	// pgvector says with a NOTICE when an HNSW build outgrows
	// maintenance_work_mem and goes on on disk, many times slower (at 1M chunks
	// of 384 dimensions, hours instead of minutes): an operator must see it.
	pcfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if strings.Contains(n.Message, "maintenance_work_mem") {
			log.Warn("pgvector: the HNSW index build outgrew its memory and continues on disk, many times slower; raise the build memory (BuildMemoryMB)",
				"notice", n.Message, "build_memory_mb", cfg.BuildMemoryMB)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	// Migrate on a plain connection first: the pool registers the vector type on
	// every new connection, which needs the extension to exist.
	if err := migrate(ctx, pcfg.ConnConfig, cfg.Meta, log); err != nil {
		return nil, err
	}
	pcfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, unavailable("connect", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, unavailable("connect", err)
	}
	s := &Store{pool: pool, cfg: cfg, log: log, lexRecheck: lexicalRecheck}
	s.bgCtx, s.bgStop = context.WithCancel(context.WithoutCancel(ctx))
	// A bulk load that died leaves the index missing or invalid. Searches are
	// exact (correct, slower) until BuildIndex runs; say so once at start.
	if st, err := indexStatus(ctx, pool); err != nil {
		pool.Close()
		return nil, unavailable("index status", err)
	} else if st != IndexValid {
		log.WarnContext(ctx, "pgvector: HNSW index is "+string(st)+"; searches rank exactly until it is built (by the first search that needs it, or `clearance index`)")
	}
	if st, err := lexicalIndexStatus(ctx, pool); err != nil {
		pool.Close()
		return nil, unavailable("index status", err)
	} else if st != IndexValid {
		log.WarnContext(ctx, "pgvector: lexical index is "+string(st)+"; lexical searches are slower until it is built (by the first lexical search, or `clearance index`)")
	} else {
		s.lexSeenValid()
	}
	if cfg.ReadDatabaseURL != "" {
		if s.replica, err = openReplica(ctx, cfg, pool, log); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return s, nil
}

// unavailable wraps a database failure; context errors stay recognisable too.
func unavailable(op string, err error) error {
	return fmt.Errorf("pgvector: %s: %w: %w", op, retrieval.ErrUnavailable, err)
}

func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// Upsert implements retrieval.Store: the ticket row and all its chunks are
// replaced in one transaction, shared with concurrent upserts (group.go).
func (s *Store) Upsert(ctx context.Context, t retrieval.Ticket, chunks []retrieval.Chunk) error {
	if err := retrieval.CheckUpsert(t, chunks, s.cfg.Meta.Dim); err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return s.upsertGrouped(ctx, newPending(t, chunks))
}

// Delete implements retrieval.Store.
func (s *Store) Delete(ctx context.Context, ticketID string) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	// Chunks go with the ticket row (ON DELETE CASCADE), in the same statement.
	if _, err := s.pool.Exec(ctx, `DELETE FROM clearance_vector_tickets WHERE id = $1`, ticketID); err != nil {
		return unavailable("delete", err)
	}
	return nil
}

// Move implements retrieval.Store.
func (s *Store) Move(ctx context.Context, ticketID, project string) error {
	if err := retrieval.CheckMove(ticketID, project); err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	found := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var old string
		err := tx.QueryRow(ctx, `SELECT project FROM clearance_vector_tickets WHERE id = $1 FOR UPDATE`, ticketID).Scan(&old)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		if old == project {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE clearance_vector_tickets SET project = $2 WHERE id = $1`, ticketID, project); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE clearance_vector_chunks SET project = $2 WHERE ticket_id = $1`, ticketID, project)
		return err
	})
	if err != nil {
		return unavailable("move", err)
	}
	if !found {
		return fmt.Errorf("move %q: %w", ticketID, retrieval.ErrNotFound)
	}
	return nil
}

// Get implements retrieval.Store.
func (s *Store) Get(ctx context.Context, ticketID string) (retrieval.Ticket, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	t := retrieval.Ticket{ID: ticketID}
	err := s.pool.QueryRow(ctx, `
SELECT tenant, project, title, body, updated_at, content_hash FROM clearance_vector_tickets WHERE id = $1`,
		ticketID).Scan(&t.Tenant, &t.Project, &t.Title, &t.Body, &t.UpdatedAt, &t.ContentHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return retrieval.Ticket{}, fmt.Errorf("get %q: %w", ticketID, retrieval.ErrNotFound)
	}
	if err != nil {
		return retrieval.Ticket{}, unavailable("get", err)
	}
	return t, nil
}

// where renders a filter as a condition on a table aliased c with tenant and
// project columns and the ticket id in column idCol, with its arguments numbered
// from $first.
func where(f retrieval.Filter, idCol string, first int) (string, []any) {
	if f.AllProjects {
		return fmt.Sprintf("c.tenant = $%d", first), []any{f.Tenant}
	}
	projects, tickets := f.Projects, f.Tickets
	if projects == nil {
		projects = []string{}
	}
	if tickets == nil {
		tickets = []string{}
	}
	return fmt.Sprintf("c.tenant = $%d AND (c.project = ANY($%d::text[]) OR c.%s = ANY($%d::text[]))",
		first, first+1, idCol, first+2), []any{f.Tenant, projects, tickets}
}

// Count implements retrieval.Store. It sums the tickets' chunk counts: the
// tickets table is narrow (no vectors), so even a whole-tenant count reads a few
// megabytes, where counting chunk rows would read the vectors' pages too.
func (s *Store) Count(ctx context.Context, f retrieval.Filter) (int, error) {
	if f.Empty() {
		return 0, nil
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	var n int
	err := s.onReplica(ctx, func(pool *pgxpool.Pool) (err error) {
		n, err = count(ctx, pool, f)
		return err
	})
	return n, err
}

func count(ctx context.Context, pool *pgxpool.Pool, f retrieval.Filter) (int, error) {
	cond, args := where(f, "id", 1)
	var n int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(c.chunks), 0) FROM clearance_vector_tickets c WHERE `+cond, args...).Scan(&n); err != nil {
		return 0, unavailable("count", err)
	}
	return int(n), nil
}

// countUpTo counts allowed chunks exactly when there are at most limit of them
// and otherwise returns some number above limit, reading at most limit+1 ticket
// rows in the common case: a whole-tenant filter need not sum every ticket. It
// also returns PostgreSQL's estimate of the chunk table's rows (pg_class
// reltuples; 0 when never analyzed), in the same round trip.
func countUpTo(ctx context.Context, pool *pgxpool.Pool, f retrieval.Filter, limit int) (n int, total float64, err error) {
	cond, args := where(f, "id", 1)
	var tickets, chunks int64
	err = pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), coalesce(sum(chunks), 0),
  (SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = 'clearance_vector_chunks'::regclass)
FROM (SELECT c.chunks FROM clearance_vector_tickets c WHERE %s LIMIT %d) x`, cond, limit+1), args...).Scan(&tickets, &chunks, &total)
	if err != nil {
		return 0, 0, unavailable("count", err)
	}
	if tickets <= int64(limit) || chunks > int64(limit) {
		return int(chunks), total, nil // all tickets seen, or already past the limit
	}
	n, err = count(ctx, pool, f) // more tickets than limit but few chunks: count them all
	return n, total, err
}

// Search implements retrieval.Store.
func (s *Store) Search(ctx context.Context, r retrieval.SearchRequest) (retrieval.SearchResult, error) {
	var hits []retrieval.Hit
	var plan Plan
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	err := s.onReplica(ctx, func(pool *pgxpool.Pool) (err error) {
		hits, plan, err = s.search(ctx, pool, r, s.cfg.Plan)
		return err
	})
	if err != nil {
		return retrieval.SearchResult{}, err
	}
	// The plan is reported as it ran: an HNSW walk is approximate even when it
	// happens to find the exact answer, since nothing proves it did.
	res := retrieval.SearchResult{Hits: hits, Plan: plan.String(), Exact: plan == PlanExact}
	return res, nil
}

// search runs r with plan (PlanAuto resolves by counting) and says which ran.
func (s *Store) search(ctx context.Context, pool *pgxpool.Pool, r retrieval.SearchRequest, plan Plan) ([]retrieval.Hit, Plan, error) {
	if err := retrieval.CheckSearch(r, s.cfg.Meta.Dim); err != nil {
		return nil, plan, err
	}
	if r.Filter.Empty() {
		return nil, PlanExact, nil // nothing allowed: the empty answer is exact
	}
	cond, args := where(r.Filter, "ticket_id", 2)
	// A filter allowing less than half the table is read through the (tenant,
	// project) index (see the exact query); unknown (a forced plan) leaves
	// the scan to PostgreSQL's planner.
	narrow := false
	if plan == PlanAuto {
		n, total, err := countUpTo(ctx, pool, r.Filter, s.cfg.ExactThreshold)
		if err != nil {
			return nil, plan, err
		}
		narrow = float64(n)*2 < total
		plan = PlanHNSW
		if n <= s.cfg.ExactThreshold {
			plan = PlanExact
		}
		if n <= r.Offset {
			return nil, plan, nil
		}
	}
	if plan == PlanHNSW {
		// Without a valid index (a bulk load, or a build that died) the graph
		// query would scan and sort every allowed row under enable_sort = off and
		// still be reported approximate: rank exactly and say so. Asked of the
		// pool that runs the search: a replica replays the primary's catalog.
		st, err := indexStatus(ctx, pool)
		if err != nil {
			return nil, plan, unavailable("search", err)
		}
		if st != IndexValid {
			// A tenant this large needs the graph: build it, concurrently.
			plan = PlanExact
			s.buildInBackground()
		}
	}
	args = append([]any{pgv.NewVector(r.Vector)}, args...)
	if plan == PlanHNSW {
		hits, err := s.searchGraph(ctx, pool, cond, args, r)
		if err != nil {
			return nil, plan, unavailable("search", err)
		}
		s.log.DebugContext(ctx, "pgvector search", "plan", plan.String(), "k", r.K, "offset", r.Offset, "hits", len(hits))
		return hits, plan, nil
	}
	var hits []retrieval.Hit
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// A whole tenant's scan (hundreds of thousands of rows) is split over
		// parallel workers when the planner finds it worth it; small filters
		// stay serial (min_parallel_table_scan_size and the setup cost).
		// A narrow filter (under half the table's rows) is read through the
		// (tenant, project) index even when it is a quarter of the table: the
		// planner assumes the rows spread over every page and picks a full
		// scan, but writes keep a tenant's rows together (group.go), so the
		// bitmap scan reads about the tenant's own pages. A filter of most of
		// the table is scanned sequentially, faster than through the bitmap
		// (0.39 s against 0.69 s for a whole 250,000-chunk table).
		settings := fmt.Sprintf(`SET LOCAL max_parallel_workers_per_gather = %d`, s.cfg.ExactWorkers)
		if narrow {
			settings += `; SET LOCAL enable_seqscan = off`
		}
		if _, err := tx.Exec(ctx, settings); err != nil {
			return err
		}
		// Ordering by the negated distance cannot use the HNSW index, so this
		// reads the allowed rows through the btree indexes and ranks them exactly.
		q := fmt.Sprintf(`
WITH top AS (
  SELECT c.ticket_id, c.ordinal, c.text, -(c.embedding <#> $1) AS score
  FROM clearance_vector_chunks c WHERE %s
  ORDER BY score DESC, c.ticket_id, c.ordinal OFFSET %d LIMIT %d)
SELECT x.ticket_id, t.tenant, t.project, t.title, x.ordinal, x.text, x.score
FROM top x JOIN clearance_vector_tickets t ON t.id = x.ticket_id
ORDER BY x.score DESC, x.ticket_id, x.ordinal`, cond, r.Offset, r.K)
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		hits, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (retrieval.Hit, error) {
			var h retrieval.Hit
			var ord int32
			var score float64
			err := row.Scan(&h.TicketID, &h.Tenant, &h.Project, &h.Title, &ord, &h.Text, &score)
			h.Ordinal, h.Score = int(ord), float32(score)
			return h, err
		})
		return err
	})
	if err != nil {
		return nil, plan, unavailable("search", err)
	}
	s.log.DebugContext(ctx, "pgvector search", "plan", plan.String(), "k", r.K, "offset", r.Offset, "hits", len(hits))
	return hits, plan, nil
}

// maxGraphPool caps the candidate pool of the graph walk (pgvector's largest
// hnsw.ef_search).
const maxGraphPool = 1000

// searchGraph ranks r's filter by walking the HNSW index with iterative scan:
// a pool of candidates beyond offset+k, re-sorted by exact distance with ties
// broken by (ticket, ordinal). When the last hit ties with the farthest
// candidate of a full pool, chunks of that same distance may lie outside the
// pool and sort before it (equal vectors: duplicated text), so the pool grows
// until the tie ends inside it or the pool reaches maxGraphPool.
func (s *Store) searchGraph(ctx context.Context, pool *pgxpool.Pool, cond string, args []any, r retrieval.SearchRequest) ([]retrieval.Hit, error) {
	limit := r.K + r.Offset
	fetch := min(2*limit+10, maxGraphPool)
	for {
		hits, tiedAtEdge, err := s.graphPool(ctx, pool, cond, args, r, fetch)
		if err != nil || !tiedAtEdge || fetch >= maxGraphPool {
			return hits, err
		}
		fetch = min(4*fetch, maxGraphPool)
	}
}

// graphPool runs one graph walk with a pool of fetch candidates and says
// whether the last hit ties with the pool's farthest candidate in a full pool.
func (s *Store) graphPool(ctx context.Context, pool *pgxpool.Pool, cond string, args []any, r retrieval.SearchRequest, fetch int) ([]retrieval.Hit, bool, error) {
	ef := min(max(s.cfg.EfSearch, fetch), maxGraphPool)
	var hits []retrieval.Hit
	var poolSize int64
	var poolEdge, last float64
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// relaxed_order keeps scanning the graph until LIMIT rows pass the filter;
		// its output is only roughly ordered, so the outer query sorts exactly.
		// enable_sort off steers the planner away from sorting the btree-filtered
		// rows, which is the exact plan this path is meant to avoid.
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL hnsw.iterative_scan = relaxed_order;
SET LOCAL hnsw.ef_search = %d; SET LOCAL hnsw.max_scan_tuples = %d; SET LOCAL enable_sort = off`,
			ef, s.cfg.MaxScanTuples)); err != nil {
			return err
		}
		q := fmt.Sprintf(`
WITH cand AS MATERIALIZED (
  SELECT c.ticket_id, c.ordinal, c.text, c.embedding <#> $1 AS d
  FROM clearance_vector_chunks c WHERE %s
  ORDER BY c.embedding <#> $1 LIMIT %d),
edge AS (SELECT count(*) AS n, max(d) AS d FROM cand)
SELECT x.ticket_id, t.tenant, t.project, t.title, x.ordinal, x.text, x.d, edge.n, edge.d
FROM cand x JOIN clearance_vector_tickets t ON t.id = x.ticket_id CROSS JOIN edge
ORDER BY x.d, x.ticket_id, x.ordinal OFFSET %d LIMIT %d`, cond, fetch, r.Offset, r.K)
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		hits, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (retrieval.Hit, error) {
			var h retrieval.Hit
			var ord int32
			var d float64
			err := row.Scan(&h.TicketID, &h.Tenant, &h.Project, &h.Title, &ord, &h.Text, &d, &poolSize, &poolEdge)
			h.Ordinal, h.Score, last = int(ord), float32(-d), d
			return h, err
		})
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return hits, len(hits) > 0 && poolSize >= int64(fetch) && last == poolEdge, nil
}

// Tickets implements retrieval.Store. Rows stream from one query.
func (s *Store) Tickets(ctx context.Context) iter.Seq2[retrieval.TicketRef, error] {
	return func(yield func(retrieval.TicketRef, error) bool) {
		rows, err := s.pool.Query(ctx, `
SELECT id, tenant, project, updated_at, content_hash, chunks FROM clearance_vector_tickets`)
		if err != nil {
			yield(retrieval.TicketRef{}, unavailable("tickets", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var r retrieval.TicketRef
			var n int32
			if err := rows.Scan(&r.ID, &r.Tenant, &r.Project, &r.UpdatedAt, &r.ContentHash, &n); err != nil {
				yield(retrieval.TicketRef{}, unavailable("tickets", err))
				return
			}
			r.Chunks = int(n)
			if !yield(r, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(retrieval.TicketRef{}, unavailable("tickets", err))
		}
	}
}

// Refs returns the metadata of the indexed tickets among ids in one query, for
// the indexer's incremental runs (indexer.RefLookup): one round trip per shard
// instead of a Get per row.
func (s *Store) Refs(ctx context.Context, ids []string) ([]retrieval.TicketRef, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `
SELECT id, tenant, project, updated_at, content_hash, chunks FROM clearance_vector_tickets WHERE id = ANY($1::text[])`, ids)
	if err != nil {
		return nil, unavailable("refs", err)
	}
	refs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (retrieval.TicketRef, error) {
		var r retrieval.TicketRef
		var n int32
		err := row.Scan(&r.ID, &r.Tenant, &r.Project, &r.UpdatedAt, &r.ContentHash, &n)
		r.Chunks = int(n)
		return r, err
	})
	if err != nil {
		return nil, unavailable("refs", err)
	}
	return refs, nil
}

// Stats implements retrieval.Store.
func (s *Store) Stats(ctx context.Context) (retrieval.Stats, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	st := retrieval.Stats{Dim: s.cfg.Meta.Dim, Model: s.cfg.Meta.Model, Backend: "pgvector"}
	var tickets, chunks int64
	// From the narrow tickets table: counting chunk rows would read every vector page.
	err := s.pool.QueryRow(ctx, `
SELECT count(*), coalesce(sum(chunks), 0) FROM clearance_vector_tickets`).Scan(&tickets, &chunks)
	if err != nil {
		return st, unavailable("stats", err)
	}
	st.Tickets, st.Chunks = int(tickets), int(chunks)
	return st, nil
}

// Close releases the connection pools.
func (s *Store) Close() error {
	s.bgStop()
	s.bg.Wait()
	if s.replica != nil {
		s.replica.close()
	}
	// A bulk load never ended: closing its session releases the lock and
	// leaves the index missing, so searches stay exact until the next build.
	s.bulkMu.Lock()
	if s.bulk != nil {
		_ = s.bulk.conn.Conn().Close(context.Background())
		s.bulk.conn.Release()
		s.bulk = nil
	}
	s.bulkMu.Unlock()
	s.pool.Close()
	return nil
}
