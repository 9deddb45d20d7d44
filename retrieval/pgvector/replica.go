package pgvector

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	pgxvec "github.com/pgvector/pgvector-go/pgx"

	"github.com/clearance-dev/clearance"
)

// A read replica takes the vector searches (Search and Count) off the primary.
// Everything else (writes, Get, Tickets, Stats) stays on the primary, so a ticket
// written through the API reads back at once and reconciliation compares against
// the source of truth.
//
// A streaming replica answers from a snapshot some time behind the primary. That
// never widens access: the store only proposes candidates, and the post-filter
// checks each one against the authorization engine at HIGHER_CONSISTENCY, so a
// ticket moved out of a project, deleted or revoked on the primary is denied even
// while the replica still holds it. What lag costs is recall: a ticket indexed on
// the primary but not yet replayed cannot be found. The replica is therefore used
// only while its staleness is known to be at most Config.MaxReplicaLag; otherwise
// (lag unknown, probe failing, replica behind) searches go to the primary.
//
// Staleness is measured without clocks on the database servers: the prober
// samples the primary's WAL position, then the replica's replay position. Every
// transaction that committed on the primary before a sample's time lies at or
// below that sample's position, so once the replica has replayed past a sample,
// its snapshot is at most (now - sample time) old.

// replica routes reads to a streaming replica while it is fresh enough.
type replica struct {
	pool     *pgxpool.Pool
	primary  *pgxpool.Pool
	maxLag   time.Duration
	interval time.Duration
	log      *slog.Logger

	// staleness is the last measured bound in nanoseconds; negative means unknown.
	staleness atomic.Int64
	fresh     atomic.Bool

	mu      sync.Mutex
	samples []walSample // primary WAL positions, oldest first

	stop chan struct{}
	done chan struct{}
}

type walSample struct {
	at  time.Time
	lsn int64
}

// ReplicaStatus describes the read replica as last probed.
type ReplicaStatus struct {
	// Configured is false when the store has no read replica.
	Configured bool
	// InUse is true while searches go to the replica.
	InUse bool
	// Staleness bounds how far the replica's snapshot is behind the primary;
	// negative when unknown (not yet probed, or the probe failed).
	Staleness time.Duration
}

func openReplica(ctx context.Context, cfg Config, primary *pgxpool.Pool, log *slog.Logger) (*replica, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.ReadDatabaseURL)
	if err != nil {
		return nil, clearance.Invalid("read_database_url", "%v", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	pcfg.ConnConfig.RuntimeParams["jit"] = "off"
	pcfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error { return pgxvec.RegisterTypes(ctx, c) }
	// The pool connects lazily: a replica that is down at start only means the
	// primary answers until it is back.
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, clearance.Invalid("read_database_url", "%v", err)
	}
	r := &replica{
		pool: pool, primary: primary, maxLag: cfg.MaxReplicaLag, interval: cfg.ReplicaProbeInterval,
		log: log, stop: make(chan struct{}), done: make(chan struct{}),
	}
	r.staleness.Store(-1)
	r.probe(ctx)
	go r.run()
	return r, nil
}

func (r *replica) run() {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), r.interval+time.Second)
			r.probe(ctx)
			cancel()
		}
	}
}

// probe samples the primary, then the replica, and updates the staleness bound.
func (r *replica) probe(ctx context.Context) {
	staleness, err := r.measure(ctx)
	if err != nil {
		r.staleness.Store(-1)
		r.setFresh(false, "probe failed", slog.String("error", err.Error()))
		return
	}
	r.staleness.Store(int64(staleness))
	if staleness > r.maxLag {
		r.setFresh(false, "replica behind", slog.Duration("staleness", staleness), slog.Duration("max", r.maxLag))
		return
	}
	r.setFresh(true, "replica fresh", slog.Duration("staleness", staleness))
}

func (r *replica) measure(ctx context.Context) (time.Duration, error) {
	var primaryLSN int64
	at := time.Now()
	if err := r.primary.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&primaryLSN); err != nil {
		return 0, err
	}
	var inRecovery bool
	var replayed *int64
	if err := r.pool.QueryRow(ctx, `SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&inRecovery, &replayed); err != nil {
		return 0, err
	}
	if !inRecovery || replayed == nil {
		// Not a standby (or one that has replayed nothing): nothing bounds how far
		// its data is from the primary's, so it is never used.
		return 0, errors.New("read database is not a streaming replica in recovery")
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = append(r.samples, walSample{at: at, lsn: primaryLSN})
	// The newest sample the replica has replayed past bounds its staleness. Keep
	// samples back to the oldest one that could still matter (a little over the
	// largest staleness we would accept), so the slice stays bounded.
	bound := time.Duration(-1)
	for i := len(r.samples) - 1; i >= 0; i-- {
		if r.samples[i].lsn <= *replayed {
			bound = now.Sub(r.samples[i].at)
			break
		}
	}
	keepFrom := 0
	for keepFrom < len(r.samples)-1 && now.Sub(r.samples[keepFrom].at) > 2*r.maxLag+2*r.interval {
		keepFrom++
	}
	r.samples = r.samples[keepFrom:]
	if bound < 0 {
		// Behind every sample kept: at least as old as the oldest.
		bound = now.Sub(r.samples[0].at)
		if bound <= r.maxLag {
			bound = r.maxLag + time.Nanosecond // unknown beyond the window: treat as too old
		}
	}
	return bound, nil
}

// setFresh records whether searches may use the replica and logs transitions.
func (r *replica) setFresh(fresh bool, msg string, attrs ...slog.Attr) {
	if r.fresh.Swap(fresh) == fresh {
		return
	}
	level := slog.LevelInfo
	if !fresh {
		level = slog.LevelWarn
	}
	r.log.LogAttrs(context.Background(), level, "pgvector read replica: "+msg, attrs...)
}

// markFailed takes the replica out of use until the next successful probe.
func (r *replica) markFailed(err error) {
	r.staleness.Store(-1)
	r.setFresh(false, "search failed, using the primary", slog.String("error", err.Error()))
}

func (r *replica) status() ReplicaStatus {
	return ReplicaStatus{Configured: true, InUse: r.fresh.Load(), Staleness: time.Duration(r.staleness.Load())}
}

func (r *replica) close() {
	close(r.stop)
	<-r.done
	r.pool.Close()
}

// readPool is the pool a search reads from and whether it is the replica.
func (s *Store) readPool() (*pgxpool.Pool, bool) {
	if s.replica != nil && s.replica.fresh.Load() {
		return s.replica.pool, true
	}
	return s.pool, false
}

// onReplica runs read on the replica while it is fresh, and on the primary when
// it is not or when the replica fails (a standby may also cancel a query that
// conflicts with replay). The caller's own cancellation is not retried.
func (s *Store) onReplica(ctx context.Context, read func(*pgxpool.Pool) error) error {
	pool, replica := s.readPool()
	err := read(pool)
	if err == nil || !replica || ctx.Err() != nil {
		return err
	}
	s.replica.markFailed(err)
	return read(s.pool)
}

// ReplicaStatus reports the read replica's state for health pages and tests.
func (s *Store) ReplicaStatus() ReplicaStatus {
	if s.replica == nil {
		return ReplicaStatus{Staleness: -1}
	}
	return s.replica.status()
}

// ProbeReplica measures the replica's staleness now instead of at the next tick.
func (s *Store) ProbeReplica(ctx context.Context) ReplicaStatus {
	if s.replica == nil {
		return s.ReplicaStatus()
	}
	s.replica.probe(ctx)
	return s.replica.status()
}
