package testenv

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReplicaURL returns the URL of the database at primaryURL on the streaming
// replica named by DATABASE_READ_URL (started by scripts/with-test-servers.sh),
// once the replica has replayed everything the primary had written when it was
// called.
func ReplicaURL(t testing.TB, primaryURL string) string {
	t.Helper()
	base := os.Getenv("DATABASE_READ_URL")
	if base == "" {
		missing(t, "DATABASE_READ_URL")
	}
	p, err := url.Parse(primaryURL)
	if err != nil {
		t.Fatalf("primary URL: %v", err)
	}
	r, err := url.Parse(base)
	if err != nil {
		t.Fatalf("DATABASE_READ_URL: %v", err)
	}
	r.Path = p.Path
	WaitReplayed(t, primaryURL, r.String())
	return r.String()
}

// WaitReplayed waits until the replica has replayed the primary's WAL up to its
// position now. The wait is long: under `make test` other packages bulk-load
// vectors and build HNSW indexes, and a replica on the same two cores replays
// that WAL slowly (a pause by another test process also holds it up).
func WaitReplayed(t testing.TB, primaryURL, replicaURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var target int64
	queryOne(ctx, t, primaryURL, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`, &target)
	for {
		// The database itself may not exist on the replica yet: keep trying.
		if c, err := pgx.Connect(ctx, replicaURL); err == nil {
			var replayed int64
			err = c.QueryRow(ctx, `SELECT coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0)`).Scan(&replayed)
			c.Close(ctx)
			if err == nil && replayed >= target {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("replica did not replay the primary's WAL within 3 minutes")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PauseReplay stops the replica from applying the primary's WAL until resume is
// called or the test ends, so it lags by everything written meanwhile. Tests of
// several packages share the replica, so pausing is serialised across processes
// by a file lock.
func PauseReplay(t testing.TB, replicaURL string) (resume func()) {
	t.Helper()
	unlock := lockFile(t, filepath.Join(os.TempDir(), "clearance-test-replica-replay.lock"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ignored any
	queryOne(ctx, t, replicaURL, `SELECT pg_wal_replay_pause()::text`, &ignored)
	var once sync.Once
	resume = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var ignored any
			queryOne(ctx, t, replicaURL, `SELECT pg_wal_replay_resume()::text`, &ignored)
			unlock()
		})
	}
	t.Cleanup(resume)
	return resume
}

func queryOne(ctx context.Context, t testing.TB, dbURL, q string, dst any) {
	t.Helper()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	if err := c.QueryRow(ctx, q).Scan(dst); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
