package indexer

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance/retrieval"
)

// BackgroundConfig configures an index schedule that runs inside another
// process (serve's --index-source with --index-every or --index-schedule).
type BackgroundConfig struct {
	// Source is a JSONL file or directory.
	Source   string
	Every    time.Duration
	Schedule string
	Store    retrieval.Store
	Embedder retrieval.Embedder
	// DataDir keeps the sync state unless DatabaseURL is set.
	DataDir string
	// DatabaseURL, when the backend is a shared PostgreSQL, keeps the sync
	// state there and makes replicas take turns (advisory lock).
	DatabaseURL string
	// Tuples keeps ticket#project tuples in step (see Config.Tuples).
	Tuples TupleWriter
	Logger *slog.Logger
	// Observer watches the runs (metrics); nil: none.
	Observer RunObserver
}

// StartBackground starts the schedule, with a first run at once. Each run logs
// its summary and failed rows. stop cancels a run in progress, waits for it and
// releases the state.
func StartBackground(ctx context.Context, cfg BackgroundConfig) (stop func(), err error) {
	src, err := NewJSONL(JSONLConfig{Path: cfg.Source})
	if err != nil {
		return nil, err
	}
	var (
		state   State
		lock    Locker
		release = func() {}
	)
	if cfg.DatabaseURL != "" {
		pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		if state, err = NewPGState(ctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
		lock, release = NewPGLock(cfg.DatabaseURL, src.Name()), pool.Close
	} else if state, err = NewFileState(cfg.DataDir); err != nil {
		return nil, err
	}
	ix, err := New(Config{Store: cfg.Store, Embedder: cfg.Embedder, State: state, Tuples: cfg.Tuples, Logger: cfg.Logger, Observer: cfg.Observer})
	if err != nil {
		release()
		return nil, err
	}
	sched, err := NewScheduler(ScheduleConfig{
		Every: cfg.Every, Cron: cfg.Schedule, RunAtStart: true, Logger: cfg.Logger, Lock: lock,
		Job: func(ctx context.Context) error {
			_, err := ix.Run(ctx, src)
			return err
		},
	})
	if err != nil {
		release()
		return nil, err
	}
	sched.Start(ctx)
	return func() { sched.Stop(); release() }, nil
}
