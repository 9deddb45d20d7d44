package indexer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/robfig/cron/v3"

	"github.com/clearance-dev/clearance"
)

// ScheduleConfig configures a Scheduler. Exactly one of Every and Cron is set.
type ScheduleConfig struct {
	// Every runs the job at a fixed interval, measured from the start of the
	// previous run.
	Every time.Duration
	// Cron is a five-field cron spec ("*/5 * * * *") or a descriptor
	// ("@hourly"), evaluated in UTC.
	Cron string
	// Job is one index run.
	Job func(ctx context.Context) error
	// Lock, when set, must be held for a run: replicas sharing a backend index
	// one at a time, and a replica that cannot get it skips its turn.
	Lock Locker
	// RunAtStart runs the job once right away instead of waiting for the first
	// tick.
	RunAtStart bool
	Logger     *slog.Logger
}

// Scheduler runs an index job on a schedule. A tick that comes while the
// previous run is still going is skipped (and logged), never queued.
type Scheduler struct {
	cfg  ScheduleConfig
	next func(time.Time) time.Time
	log  *slog.Logger

	running sync.Mutex // held during a run; TryLock skips overlapping ticks
	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewScheduler checks the schedule.
func NewScheduler(cfg ScheduleConfig) (*Scheduler, error) {
	if cfg.Job == nil {
		return nil, errors.New("scheduler: no job")
	}
	s := &Scheduler{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Every > 0 && cfg.Cron != "":
		return nil, clearance.Invalid("schedule", "set either an interval or a cron spec, not both")
	case cfg.Every > 0:
		s.next = func(t time.Time) time.Time { return t.Add(cfg.Every) }
	case cfg.Cron != "":
		spec, err := cron.ParseStandard(cfg.Cron)
		if err != nil {
			return nil, clearance.Invalid("schedule", "%v", err)
		}
		s.next = func(t time.Time) time.Time { return spec.Next(t.UTC()) }
	default:
		return nil, clearance.Invalid("schedule", "an interval or a cron spec is required")
	}
	return s, nil
}

// Next returns when the schedule fires after t.
func (s *Scheduler) Next(t time.Time) time.Time { return s.next(t) }

// Start runs the schedule in the background until Stop or until ctx ends.
func (s *Scheduler) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.loop(ctx, s.done)
}

func (s *Scheduler) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = s.RunNow(ctx)
		}()
	}
	if s.cfg.RunAtStart {
		tick()
	}
	for {
		now := time.Now()
		at := s.next(now)
		if at.IsZero() { // a cron spec that never fires again
			return
		}
		timer := time.NewTimer(at.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
			tick()
		}
	}
}

// Stop cancels a run in progress (its watermark stays at the last batch it
// wrote) and waits for it to end.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// RunNow runs the job once unless a run is already going here, or (with a
// Lock) on another replica; ran says whether it ran.
func (s *Scheduler) RunNow(ctx context.Context) (ran bool, err error) {
	if !s.running.TryLock() {
		s.log.Warn("index run skipped: the previous run is still going")
		return false, nil
	}
	defer s.running.Unlock()
	if s.cfg.Lock != nil {
		unlock, ok, err := s.cfg.Lock.TryLock(ctx)
		if err != nil {
			s.log.Error("index run skipped: single-runner lock failed", "err", err)
			return false, err
		}
		if !ok {
			s.log.Info("index run skipped: another replica holds the single-runner lock")
			return false, nil
		}
		defer unlock()
	}
	if err := s.cfg.Job(ctx); err != nil {
		s.log.Error("index run failed", "err", err)
		return true, err
	}
	return true, nil
}

// Locker is a cross-process lock that is tried, never waited for.
type Locker interface {
	// TryLock takes the lock if it is free; unlock releases it.
	TryLock(ctx context.Context) (unlock func(), ok bool, err error)
}

// PGLock is a PostgreSQL session advisory lock held on a dedicated
// connection for the length of a run. If that connection dies, PostgreSQL
// releases the lock; another replica may then start a run while this one
// finishes, which costs duplicate work but no wrong data (writes are
// idempotent upserts).
type PGLock struct {
	url string
	key int64
}

// NewPGLock returns the lock named name (hashed to a 64-bit advisory lock
// key) in the database at url.
func NewPGLock(url, name string) *PGLock {
	h := fnv.New64a()
	h.Write([]byte("clearance-indexer:" + name))
	return &PGLock{url: url, key: int64(h.Sum64())}
}

// TryLock implements Locker.
func (l *PGLock) TryLock(ctx context.Context) (func(), bool, error) {
	conn, err := pgx.Connect(ctx, l.url)
	if err != nil {
		return nil, false, fmt.Errorf("single-runner lock: %w: %w", clearance.ErrUnavailable, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, l.key).Scan(&ok); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, fmt.Errorf("single-runner lock: %w: %w", clearance.ErrUnavailable, err)
	}
	if !ok {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, nil
	}
	unlock := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key)
		conn.Close(ctx)
	}
	return unlock, true, nil
}
