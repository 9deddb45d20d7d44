package pgvector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/clearance-dev/clearance"
)

// Bulk loads (docs/decisions/pgvector-bulk-load.md). Inserting a chunk into an
// HNSW graph costs about a millisecond on a 100k-row index (390-970 chunks/s
// measured), while COPY into the bare table writes 200,000 chunks/s; building the
// graph once after the load is many times cheaper than growing it row by row. A
// bulk load therefore drops the index, writes, and builds it again with CREATE
// INDEX CONCURRENTLY under the session's maintenance settings.
//
// The index's state in pg_index is the only record of a load: while it is
// missing or INVALID (a CREATE INDEX CONCURRENTLY that crashed or was cancelled
// leaves it so, and PostgreSQL then ignores it), every search takes the exact
// plan and says so. A session advisory lock marks a load or build in progress; a
// killed process's lock goes with its connection, so the next BuildIndex sees an
// invalid index nobody is building, drops it and builds it again.

// IndexStatus is the state of the HNSW index.
type IndexStatus string

const (
	// IndexValid: the index exists and PostgreSQL uses it.
	IndexValid IndexStatus = "valid"
	// IndexMissing: dropped for a bulk load (running or interrupted).
	IndexMissing IndexStatus = "missing"
	// IndexInvalid: a concurrent build is running, or one crashed and left it.
	IndexInvalid IndexStatus = "invalid"
)

// ErrBulkBusy: another session holds the store's bulk-load lock (a bulk load or
// an index build is running).
var ErrBulkBusy = fmt.Errorf("pgvector: a bulk load or index build is running: %w", clearance.ErrConflict)

// bulkLockKey is the first key of the session advisory lock of bulk loads and
// index builds ("clrv"); the second is the chunk table's oid, so stores in
// different schemas of one database do not share it.
const bulkLockKey = 0x636c7276

const (
	lockSQL   = `SELECT pg_try_advisory_lock($1, 'clearance_vector_chunks'::regclass::oid::int)`
	unlockSQL = `SELECT pg_advisory_unlock($1, 'clearance_vector_chunks'::regclass::oid::int)`
)

// indexStatusSQL reads an index's state from pg_index, looked up by its table
// (resolved on the search path) so another schema's index of the same name
// never answers.
const indexStatusSQL = `
SELECT coalesce(bool_and(i.indisvalid AND i.indisready), false), count(*)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = $2::regclass AND c.relname = $1`

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// indexStatus is the HNSW index's state.
func indexStatus(ctx context.Context, q querier) (IndexStatus, error) {
	return indexStatusOf(ctx, q, "clearance_vector_chunks", hnswIndex)
}

// lexicalIndexStatus is the state of the lexical table's GIN indexes taken
// together: missing if any partition's is, else invalid if any is.
func lexicalIndexStatus(ctx context.Context, q querier) (IndexStatus, error) {
	sts, err := lexicalIndexStatuses(ctx, q)
	if err != nil {
		return "", err
	}
	worst := IndexValid
	for _, st := range sts {
		switch {
		case st == IndexMissing:
			return IndexMissing, nil
		case st == IndexInvalid:
			worst = IndexInvalid
		}
	}
	return worst, nil
}

// lexicalIndexStatuses is the state of each partition's GIN index, in
// partition order.
func lexicalIndexStatuses(ctx context.Context, q querier) ([]IndexStatus, error) {
	sts := make([]IndexStatus, lexicalPartitions)
	for i := range sts {
		st, err := indexStatusOf(ctx, q, lexicalPartition(i), lexicalIndex(i))
		if err != nil {
			return nil, err
		}
		sts[i] = st
	}
	return sts, nil
}

func indexStatusOf(ctx context.Context, q querier, table, index string) (IndexStatus, error) {
	var valid bool
	var n int64
	if err := q.QueryRow(ctx, indexStatusSQL, index, table).Scan(&valid, &n); err != nil {
		return "", err
	}
	switch {
	case n == 0:
		return IndexMissing, nil
	case !valid:
		return IndexInvalid, nil
	}
	return IndexValid, nil
}

// IndexStatus reports the HNSW index's state. Anything but IndexValid means the
// searches that would walk the graph rank exactly instead (slower, recall 1).
func (s *Store) IndexStatus(ctx context.Context) (IndexStatus, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	st, err := indexStatus(ctx, s.pool)
	if err != nil {
		return "", unavailable("index status", err)
	}
	return st, nil
}

// bulkState is the connection holding the bulk-load lock between BeginBulk and
// EndBulk.
type bulkState struct {
	conn *pgxpool.Conn
}

// BeginBulk starts a bulk load: it takes the store's bulk-load lock (ErrBulkBusy
// if another session holds it) and drops the HNSW index and the lexical
// table's GIN index, so the upserts that follow skip the per-row graph insert
// and the GIN's per-row entries (together most of a chunk's write cost). Until
// EndBulk, searches rank exactly and lexical searches read the allowed rows
// through the (tenant, project) index (same answers, slower). A process that
// dies before EndBulk leaves the indexes missing; BuildIndex (any later
// `clearance index` run, or the first search that wants one) builds them.
func (s *Store) BeginBulk(ctx context.Context) error {
	s.bulkMu.Lock()
	defer s.bulkMu.Unlock()
	if s.bulk != nil {
		return fmt.Errorf("pgvector: bulk load already begun: %w", clearance.ErrConflict)
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return unavailable("bulk begin", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, lockSQL, bulkLockKey).Scan(&ok); err != nil {
		conn.Release()
		return unavailable("bulk begin", err)
	}
	if !ok {
		conn.Release()
		return ErrBulkBusy
	}
	// CONCURRENTLY: searches running on the index finish first, none is blocked.
	s.lexValidAt.Store(0)
	drop := []string{hnswIndex}
	for i := range lexicalPartitions {
		drop = append(drop, lexicalIndex(i))
	}
	for _, index := range drop {
		if _, err := conn.Exec(ctx, `DROP INDEX CONCURRENTLY IF EXISTS `+index); err != nil {
			// The connection may hold the lock in a broken state: close it, which
			// releases the lock with the session.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
			conn.Release()
			return unavailable("bulk begin", err)
		}
	}
	s.bulk = &bulkState{conn: conn}
	s.log.InfoContext(ctx, "pgvector bulk load: HNSW and lexical indexes dropped; searches are exact (and lexical ones slower) until they are built")
	return nil
}

// EndBulk ends a bulk load: it builds the lexical table's GIN index, and the
// HNSW index if the store needs one (see BuildIndex), reports whether it built
// the HNSW index, and releases the lock. On failure
// (or cancellation) the lock is released all the same and the index is left
// missing or invalid: searches stay exact and the next build retries.
func (s *Store) EndBulk(ctx context.Context) (bool, error) {
	s.bulkMu.Lock()
	defer s.bulkMu.Unlock()
	if s.bulk == nil {
		return false, fmt.Errorf("pgvector: no bulk load begun: %w", clearance.ErrConflict)
	}
	conn := s.bulk.conn
	s.bulk = nil
	built, err := s.build(ctx, conn)
	release(ctx, conn)
	return built, err
}

// BuildIndex builds the lexical table's GIN index if it is missing or invalid
// (a bulk load that died), and the HNSW index if it is missing or invalid
// (dropping an invalid one first) and some search can take the HNSW plan, that is some
// tenant has more than ExactThreshold chunks (with Config.Plan PlanAuto; never
// with PlanExact, always with PlanHNSW); otherwise every search is exact
// and the index would only slow writes down, so it stays deferred. It reports
// whether it built, and returns ErrBulkBusy without waiting when a bulk load or
// another build holds the lock (that session builds, or leaves it to the next
// call). Searches that want the graph while it is not valid call it in the
// background.
func (s *Store) BuildIndex(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BuildTimeout)
	defer cancel()
	if st, err := indexStatus(ctx, s.pool); err != nil {
		return false, unavailable("index status", err)
	} else if st == IndexValid {
		if lst, err := lexicalIndexStatus(ctx, s.pool); err != nil {
			return false, unavailable("index status", err)
		} else if lst == IndexValid {
			s.lexSeenValid()
			return false, nil
		}
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, unavailable("build index", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, lockSQL, bulkLockKey).Scan(&ok); err != nil {
		conn.Release()
		return false, unavailable("build index", err)
	}
	if !ok {
		conn.Release()
		return false, ErrBulkBusy
	}
	built, err := s.build(ctx, conn)
	release(ctx, conn)
	return built, err
}

// buildInBackground starts BuildIndex unless one is running in this process;
// Close cancels it (leaving an invalid index the next build replaces).
func (s *Store) buildInBackground() {
	if !s.building.CompareAndSwap(false, true) {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.building.Store(false)
		built, err := s.BuildIndex(s.bgCtx)
		switch {
		case errors.Is(err, ErrBulkBusy):
		case err != nil:
			s.log.Warn("pgvector: background HNSW index build failed", "err", err)
		case built:
			s.log.Info("pgvector: background HNSW index build done")
		}
	}()
}

// resetSession undoes a build's session settings before the connection goes
// back to the pool, also after ctx ended, within sessionCleanupTimeout (a
// connection that does not answer is closed: the pool then drops it).
func resetSession(ctx context.Context, c *pgxpool.Conn) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionCleanupTimeout)
	defer cancel()
	if _, err := c.Exec(rctx, `RESET ALL`); err != nil {
		_ = c.Conn().Close(rctx)
	}
}

// sessionCleanupTimeout bounds the statements that give a connection back
// clean (RESET ALL, the bulk lock's unlock).
const sessionCleanupTimeout = 10 * time.Second

// release gives back a connection holding the bulk-load lock: unlocked, or
// closed when unlocking fails (closing the session releases its locks too).
func release(ctx context.Context, conn *pgxpool.Conn) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionCleanupTimeout)
	defer cancel()
	var ok bool
	if err := conn.QueryRow(uctx, unlockSQL, bulkLockKey).Scan(&ok); err != nil || !ok {
		_ = conn.Conn().Close(uctx)
	}
	conn.Release()
}

// build makes the index valid on conn, which holds the bulk-load lock, when a
// search can use it: nobody else builds, so an invalid index is a dead build's
// and is dropped first.
func (s *Store) build(ctx context.Context, conn *pgxpool.Conn) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BuildTimeout)
	defer cancel()
	if err := s.buildLexical(ctx, conn); err != nil {
		return false, err
	}
	st, err := indexStatus(ctx, conn)
	if err != nil {
		return false, unavailable("build index", err)
	}
	if st == IndexValid {
		return false, nil
	}
	// The auto plan walks the graph only for filters allowing more than
	// ExactThreshold chunks, and a filter never allows more than its tenant has.
	var largest int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(n), 0) FROM
(SELECT sum(chunks) AS n FROM clearance_vector_tickets GROUP BY tenant) x`).Scan(&largest); err != nil {
		return false, unavailable("build index", err)
	}
	var stmts []string
	if st == IndexInvalid {
		s.log.WarnContext(ctx, "pgvector: dropping an invalid HNSW index left by an interrupted build")
		stmts = append(stmts, `DROP INDEX CONCURRENTLY IF EXISTS `+hnswIndex)
	}
	need := largest > int64(s.cfg.ExactThreshold)
	switch s.cfg.Plan {
	case PlanExact:
		need = false // no search walks the graph
	case PlanHNSW:
		need = largest > 0
	}
	if need {
		// Session settings for the build only, reset before the connection goes
		// back to the pool. client_connection_check_interval makes the server
		// abort the build when this process dies instead of finishing it for
		// nobody; the INVALID index it leaves is rebuilt by the next build.
		stmts = append(stmts,
			fmt.Sprintf(`SET maintenance_work_mem = '%dMB'`, s.cfg.BuildMemoryMB),
			fmt.Sprintf(`SET max_parallel_maintenance_workers = %d`, s.cfg.BuildWorkers),
			`CREATE INDEX CONCURRENTLY `+hnswIndex+` ON clearance_vector_chunks `+hnswIndexDef,
			`RESET ALL`)
	} else {
		s.log.InfoContext(ctx, "pgvector: HNSW index deferred: no tenant has more chunks than ExactThreshold, every search is exact",
			"largest_tenant_chunks", largest, "exact_threshold", s.cfg.ExactThreshold)
	}
	if need {
		// PostgreSQL 14 and later; older servers finish a dead client's build,
		// which leaves a valid index, also fine.
		if _, err := conn.Exec(ctx, `SET client_connection_check_interval = '1s'`); err != nil {
			s.log.DebugContext(ctx, "pgvector: client_connection_check_interval not set", "err", err)
		}
	}
	start := time.Now()
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			// A failed CREATE INDEX CONCURRENTLY leaves an INVALID index: searches
			// ignore it and the next build drops it.
			resetSession(ctx, conn)
			return false, unavailable("build index", err)
		}
	}
	if !need {
		return false, nil
	}
	if st, err := indexStatus(ctx, conn); err != nil {
		return false, unavailable("build index", err)
	} else if st != IndexValid {
		return false, unavailable("build index", fmt.Errorf("index %s is %s after the build", hnswIndex, st))
	}
	s.log.InfoContext(ctx, "pgvector: HNSW index built", "seconds", time.Since(start).Seconds())
	return true, nil
}

// buildLexical makes every partition's GIN index of the lexical table valid;
// conn holds the bulk-load lock. Every lexical search can use them, so they are
// never deferred; building them once over the loaded rows cost a fraction of
// what adding each row's entries did (docs/decisions/pgvector-lexical-table.md).
// PostgreSQL builds a GIN index in one process, so the partitions' indexes are
// built by up to BuildWorkers sessions at once (conn and connections of the
// pool), each CONCURRENTLY: searches and writers are never blocked.
func (s *Store) buildLexical(ctx context.Context, conn *pgxpool.Conn) error {
	sts, err := lexicalIndexStatuses(ctx, conn)
	if err != nil {
		return unavailable("build lexical index", err)
	}
	var todo []int
	for i, st := range sts {
		if st != IndexValid {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		s.lexSeenValid()
		return nil
	}
	// More sessions only as the pool has idle connections for them soon: a
	// pool busy with searches leaves the work to fewer.
	conns := []*pgxpool.Conn{conn}
	for len(conns) < min(max(1, s.cfg.BuildWorkers), len(todo)) {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := s.pool.Acquire(actx)
		cancel()
		if err != nil {
			break
		}
		defer c.Release()
		conns = append(conns, c)
	}
	memMB := max(64, s.cfg.BuildMemoryMB/len(conns))
	start := time.Now()
	next := make(chan int, len(todo))
	for _, i := range todo {
		next <- i
	}
	close(next)
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range conns {
		g.Go(func() error { return s.buildLexicalPartitions(gctx, c, memMB, sts, next) })
	}
	if err := g.Wait(); err != nil {
		return unavailable("build lexical index", err)
	}
	if st, err := lexicalIndexStatus(ctx, conn); err != nil {
		return unavailable("build lexical index", err)
	} else if st != IndexValid {
		return unavailable("build lexical index", fmt.Errorf("lexical indexes are %s after the build", st))
	}
	s.lexSeenValid()
	s.log.InfoContext(ctx, "pgvector: lexical index built", "seconds", time.Since(start).Seconds(),
		"partitions", len(todo), "sessions", len(conns))
	return nil
}

// buildLexicalPartitions builds on c the GIN indexes of the partitions it
// takes from next, dropping an invalid one (a dead build's) first. A failed
// CREATE INDEX CONCURRENTLY leaves an INVALID index: searches ignore it and
// the next build drops it.
func (s *Store) buildLexicalPartitions(ctx context.Context, c *pgxpool.Conn, memMB int, sts []IndexStatus, next <-chan int) error {
	defer resetSession(ctx, c)
	// The server aborts the build when this process dies instead of finishing
	// it for nobody (PostgreSQL 14 and later).
	if _, err := c.Exec(ctx, `SET client_connection_check_interval = '1s'`); err != nil {
		s.log.DebugContext(ctx, "pgvector: client_connection_check_interval not set", "err", err)
	}
	if _, err := c.Exec(ctx, fmt.Sprintf(`SET maintenance_work_mem = '%dMB'`, memMB)); err != nil {
		return err
	}
	for i := range next {
		if sts[i] == IndexInvalid {
			s.log.WarnContext(ctx, "pgvector: dropping an invalid lexical index left by an interrupted build", "index", lexicalIndex(i))
			if _, err := c.Exec(ctx, `DROP INDEX CONCURRENTLY IF EXISTS `+lexicalIndex(i)); err != nil {
				return err
			}
		}
		if _, err := c.Exec(ctx, `CREATE INDEX CONCURRENTLY `+lexicalIndex(i)+` ON `+lexicalPartition(i)+` `+lexicalIndexDef); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// The lexical table's hash partitions and their GIN indexes, created by vector
// migration 6; lexicalIndexDef must stay that migration's definition.
const (
	lexicalPartitions = 4
	lexicalIndexDef   = `USING gin (doc)`
)

// lexicalPartition is the name of the lexical table's partition i.
func lexicalPartition(i int) string { return fmt.Sprintf("clearance_vector_lexical_p%d", i) }

// lexicalIndex is the name of partition i's GIN index on doc.
func lexicalIndex(i int) string { return lexicalPartition(i) + "_doc" }

// hnswIndexDef is the index's access method, column and build parameters, shared
// by the migration that created it first (internal/pgschema/vector) and rebuilds.
const hnswIndexDef = `USING hnsw (embedding vector_ip_ops)`

// BuildProgress is how far a running index build on this store's tables has
// got, from PostgreSQL's pg_stat_progress_create_index.
type BuildProgress struct {
	// Index is what is being built: "hnsw" (the graph over the chunks: blocks
	// of the chunk table read; pgvector reports no total for the graph
	// inserts themselves) or "lexical" (the lexical partitions' GIN indexes:
	// blocks of all partitions, those already indexed and those a running
	// build has scanned counted as done).
	Index       string
	Phase       string
	BlocksDone  int64
	BlocksTotal int64
	TuplesDone  int64
}

// lexicalProgressSQL sums the lexical partitions' builds. A build's table scan
// is its phase "building index"; the phases after it (waiting, validation)
// count the partition as scanned, those before it as not.
const lexicalProgressSQL = `
WITH parts AS (
  SELECT c.oid, pg_relation_size(c.oid) / current_setting('block_size')::bigint AS blocks,
    EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      WHERE i.indrelid = c.oid AND ic.relname = c.relname || '_doc' AND i.indisvalid AND i.indisready) AS built
  FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
  WHERE h.inhparent = 'clearance_vector_lexical'::regclass)
SELECT coalesce(string_agg(DISTINCT p.phase, ', '), ''),
  coalesce(sum(CASE
    WHEN parts.built THEN parts.blocks
    WHEN p.phase LIKE 'building index%' THEN least(p.blocks_done, parts.blocks)
    WHEN p.phase LIKE 'waiting for writers before validation%' OR p.phase LIKE 'index validation%'
      OR p.phase LIKE 'waiting for old snapshots%' OR p.phase LIKE 'waiting for readers%' THEN parts.blocks
    ELSE 0 END), 0)::bigint,
  coalesce(sum(parts.blocks), 0)::bigint, coalesce(sum(p.tuples_done), 0)::bigint, count(p.pid)
FROM parts LEFT JOIN pg_stat_progress_create_index p ON p.relid = parts.oid`

// BuildProgress reports the index build running on this store's tables, from
// any session (another process's build too), and false when none runs. The
// HNSW build is reported when both run.
func (s *Store) BuildProgress(ctx context.Context) (BuildProgress, bool, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	p := BuildProgress{Index: "hnsw"}
	err := s.pool.QueryRow(ctx, `SELECT phase, blocks_done, blocks_total, tuples_done
FROM pg_stat_progress_create_index WHERE relid = 'clearance_vector_chunks'::regclass LIMIT 1`).
		Scan(&p.Phase, &p.BlocksDone, &p.BlocksTotal, &p.TuplesDone)
	if err == nil {
		return p, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return BuildProgress{}, false, unavailable("build progress", err)
	}
	p = BuildProgress{Index: "lexical"}
	var running int64
	if err := s.pool.QueryRow(ctx, lexicalProgressSQL).Scan(&p.Phase, &p.BlocksDone, &p.BlocksTotal, &p.TuplesDone, &running); err != nil {
		return BuildProgress{}, false, unavailable("build progress", err)
	}
	if running == 0 {
		return BuildProgress{}, false, nil
	}
	return p, true, nil
}
