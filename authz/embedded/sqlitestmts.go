package embedded

import (
	"cmp"
	"container/list"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	sqlitedriver "modernc.org/sqlite"
)

// defaultStmtCacheSize bounds the prepared statements one sqlite connection keeps.
// OpenFGA's queries come in a few dozen shapes; IN lists of varying length add
// more, and the least recently used are finalized.
const defaultStmtCacheSize = 256

// defaultStmtCacheBytes bounds the SQL text of the statements one connection
// keeps, a stand-in for their compiled size: a tuple write of 1,024 rows is
// one INSERT of about 50 KB of text, whose compiled program is several times
// that. A statement longer than the bound runs unprepared.
const defaultStmtCacheBytes = 512 << 10

// stmtCachingConnector opens sqlite connections that keep their prepared
// statements between queries.
//
// OpenFGA's sqlite datastore sends every query as text, and the driver parses and
// plans it again each time: a profile of HIGHER_CONSISTENCY checks on a 50,000-ticket
// org spent about half of the check time in sqlite's parser. A check runs a dozen
// small queries of the same few shapes, so a per-connection cache of prepared
// statements keyed by the query text removes that work without touching OpenFGA.
// Writes too: an index run writes each shard's ticket#project tuples as multi-row
// INSERTs of the same size, which parsing cost about a seventh of the write
// (BenchmarkSQLiteTicketWrites: 18,400-20,500 tuples/s uncached, 21,300-23,400
// cached).
// database/sql hands a connection to one goroutine at a time, so the cache needs no
// lock; a statement whose rows are still open (a second query inside a
// transaction) is never reused: that query runs unprepared.
type stmtCachingConnector struct {
	dsn  string
	drv  *sqlitedriver.Driver
	size int
	// maxBytes bounds the cached statements' text (defaultStmtCacheBytes when 0).
	maxBytes int
}

func (c *stmtCachingConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	inner, ok := conn.(sqliteConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("sqlite driver connection %T lacks the context methods", conn)
	}
	return &stmtCachingConn{sqliteConn: inner, size: c.size, maxBytes: cmp.Or(c.maxBytes, defaultStmtCacheBytes),
		stmts: map[string]*list.Element{}, lru: list.New()}, nil
}

func (c *stmtCachingConnector) Driver() driver.Driver { return c.drv }

// sqliteConn is what database/sql uses of the driver's connection; every method
// not overridden below is passed through unchanged.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type stmtCachingConn struct {
	sqliteConn
	size     int
	maxBytes int
	bytes    int                      // text of the cached statements
	stmts    map[string]*list.Element // query text -> element of lru holding *cachedStmt
	lru      *list.List               // front: most recently used
}

type cachedStmt struct {
	query string
	stmt  driver.Stmt
	busy  bool // its rows are open
}

// cached returns query's idle prepared statement, preparing and caching it
// on first use, or nil when it must run unprepared: its rows are still open
// (a second query inside a transaction), or it is longer than the cache.
func (c *stmtCachingConn) cached(ctx context.Context, query string) (*cachedStmt, error) {
	el, ok := c.stmts[query]
	if !ok {
		if len(query) > c.maxBytes {
			return nil, nil
		}
		st, err := c.sqliteConn.PrepareContext(ctx, query)
		if err != nil {
			return nil, err
		}
		el = c.lru.PushFront(&cachedStmt{query: query, stmt: st})
		c.stmts[query] = el
		c.bytes += len(query)
		c.evict()
	}
	cs := el.Value.(*cachedStmt)
	if cs.busy {
		return nil, nil
	}
	c.lru.MoveToFront(el)
	return cs, nil
}

// preparedAs is query's cached statement as the driver interface T (its
// query or exec method), or ok false when the query must run unprepared.
func preparedAs[T any](ctx context.Context, c *stmtCachingConn, query string) (st T, cs *cachedStmt, ok bool, err error) {
	if cs, err = c.cached(ctx, query); err != nil || cs == nil {
		return st, nil, false, err
	}
	st, ok = cs.stmt.(T)
	return st, cs, ok, nil
}

// QueryContext runs query on its cached prepared statement.
func (c *stmtCachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, cs, ok, err := preparedAs[driver.StmtQueryContext](ctx, c, query)
	if err != nil {
		return nil, err
	}
	if !ok {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := q.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	cs.busy = true
	return &cachedRows{Rows: rows, stmt: cs}, nil
}

// ExecContext runs query on its cached prepared statement (the driver resets
// it when the execution ends).
func (c *stmtCachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	x, _, ok, err := preparedAs[driver.StmtExecContext](ctx, c, query)
	if err != nil {
		return nil, err
	}
	if !ok {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	return x.ExecContext(ctx, args)
}

// evict finalizes the least recently used idle statements beyond the bounds,
// never the most recent one (the statement about to run).
func (c *stmtCachingConn) evict() {
	for el := c.lru.Back(); el != nil && el != c.lru.Front() && (c.lru.Len() > c.size || c.bytes > c.maxBytes); {
		prev := el.Prev()
		if cs := el.Value.(*cachedStmt); !cs.busy {
			cs.stmt.Close()
			c.lru.Remove(el)
			delete(c.stmts, cs.query)
			c.bytes -= len(cs.query)
		}
		el = prev
	}
}

// Close finalizes the cached statements, then closes the connection.
func (c *stmtCachingConn) Close() error {
	for el := c.lru.Front(); el != nil; el = el.Next() {
		el.Value.(*cachedStmt).stmt.Close()
	}
	c.stmts, c.lru, c.bytes = nil, list.New(), 0
	return c.sqliteConn.Close()
}

// cachedRows frees its statement for the next query when closed (the driver
// resets a reused statement instead of finalizing it).
type cachedRows struct {
	driver.Rows
	stmt *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.stmt.busy = false
	return err
}

// tuneSQLite prepares the datastore file for the engine's queries (ADR
// sqlite-planner-statistics) before OpenFGA opens its connections: it drops
// OpenFGA's two partial tuple indexes and, with pin, pins the tuple statistics.
//
// The partial indexes' condition (user_type = 'user' / 'userset') is matched
// against a bound parameter, and sqlite re-prepares a statement whose plan
// depended on a bound value every time it is bound again, so with them no cached
// statement is ever reused. They repeat the primary key's columns, which serves
// the same lookups. Measured on 10,000 tickets: 2.7 ms per check with them, 1.5 ms
// without (BenchmarkSQLiteCheck).
func tuneSQLite(ctx context.Context, dsn string, pin bool) error {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, idx := range partialTupleIndexes {
		if _, err := db.ExecContext(ctx, "DROP INDEX IF EXISTS "+idx.name); err != nil {
			return fmt.Errorf("drop sqlite index %s: %w", idx.name, err)
		}
	}
	if pin {
		return pinTupleStatistics(ctx, db)
	}
	return nil
}

// partialTupleIndexes are OpenFGA's sqlite migration 005 indexes that
// tuneSQLite drops (kept here so a benchmark can restore them).
var partialTupleIndexes = []struct{ name, create string }{
	{"idx_tuple_partial_user", "CREATE INDEX IF NOT EXISTS idx_tuple_partial_user ON tuple (store, object_type, object_id, relation, user_object_type, user_object_id, user_relation) WHERE user_type = 'user'"},
	{"idx_tuple_partial_userset", "CREATE INDEX IF NOT EXISTS idx_tuple_partial_userset ON tuple (store, object_type, object_id, relation, user_object_type, user_object_id, user_relation) WHERE user_type = 'userset'"},
}
