package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openfga/openfga/pkg/storage/sqlite"
)

// DefaultSQLiteAnalyzeLimit is how many index entries ANALYZE samples per index.
// Rough statistics are all the planner needs to prefer the reverse-lookup index,
// and the limit keeps one ANALYZE at tens of milliseconds whatever the size.
const DefaultSQLiteAnalyzeLimit = 1000

// minAnalyzeInterval is the fewest tuple changes between two refreshes.
const minAnalyzeInterval = 1000

// sqliteStats keeps sqlite's planner statistics (sqlite_stat1) current.
//
// OpenFGA's sqlite datastore ships no statistics. Without them sqlite answers a
// reverse lookup (tuples of a type whose user is X, ordered by object id: every
// ListObjects and Read by user) by walking the tuple primary key in object order
// to skip a sort, which costs time linear in the type's tuples: listing the three
// tickets shared with a user took ~120 ms at 50,000 tickets, and 1.3 ms once
// ANALYZE had run (docs/benchmarks.md). Statistics are refreshed at open and
// whenever the tuples changed by a quarter since the last refresh.
type sqliteStats struct {
	db    *sql.DB
	limit int
	log   *slog.Logger

	changed   atomic.Int64 // tuples written or deleted since the last refresh
	threshold atomic.Int64 // refresh when changed reaches it
	running   atomic.Bool
	wg        sync.WaitGroup
}

// openSQLiteStats opens a connection of its own to the datastore file and
// refreshes the statistics once.
func openSQLiteStats(ctx context.Context, dsn string, limit int, log *slog.Logger) (*sqliteStats, error) {
	dsn, err := sqlite.PrepareDSN(dsn)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// analysis_limit is a per-connection setting: keep exactly one connection.
	db.SetMaxOpenConns(1)
	s := &sqliteStats{db: db, limit: limit, log: log}
	s.threshold.Store(minAnalyzeInterval)
	if err := s.refresh(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// refresh runs ANALYZE and sets the next threshold from the row count it found.
func (s *sqliteStats) refresh(ctx context.Context) error {
	start := time.Now()
	if _, err := s.db.ExecContext(ctx, "PRAGMA analysis_limit="+strconv.Itoa(s.limit)); err != nil {
		return fmt.Errorf("sqlite analysis_limit: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("sqlite analyze: %w", err)
	}
	rows, err := s.tupleRows(ctx)
	if err != nil {
		return err
	}
	s.changed.Store(0)
	s.threshold.Store(max(minAnalyzeInterval, rows/4))
	s.log.Debug("sqlite statistics refreshed", "tuples", rows, "took", time.Since(start))
	return nil
}

// tupleRows is the tuple table's row count as ANALYZE estimated it.
func (s *sqliteStats) tupleRows(ctx context.Context) (int64, error) {
	var stat string
	err := s.db.QueryRowContext(ctx, "SELECT stat FROM sqlite_stat1 WHERE tbl = 'tuple' LIMIT 1").Scan(&stat)
	if err == sql.ErrNoRows {
		return 0, nil // an empty table has no statistics row
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite statistics: %w", err)
	}
	n, err := strconv.ParseInt(strings.Fields(stat)[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sqlite statistics %q: %w", stat, err)
	}
	return n, nil
}

// wrote counts changed tuples and starts a background refresh when enough
// changed. Statistics only steer query plans, never answers, so a failed refresh
// is logged and retried after the next writes.
func (s *sqliteStats) wrote(n int) {
	if s.changed.Add(int64(n)) < s.threshold.Load() || !s.running.CompareAndSwap(false, true) {
		return
	}
	s.wg.Go(func() {
		defer s.running.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.refresh(ctx); err != nil {
			s.log.Warn("sqlite statistics not refreshed", "err", err)
		}
	})
}

func (s *sqliteStats) close() error {
	s.wg.Wait()
	return s.db.Close()
}
