package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/internal/pgschema"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// replicaConfig is serve's configuration for a replica with everything on
// PostgreSQL: embedded engine datastore, pgvector store, audit log, API keys and
// audit page sessions (and, opened separately, the indexer's watermarks).
func replicaConfig(t *testing.T, databaseURL string) serveConfig {
	t.Helper()
	var cfg serveConfig
	cmd := &cobra.Command{}
	cfg.register(cmd)
	if err := cmd.Flags().Parse([]string{"--database-url", databaseURL, "--store", "pgvector", "--data-dir", t.TempDir(), "--embedding-dim", "64"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.resolve(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// openReplica opens every backend `serve` opens, plus the indexer state a
// background index run opens.
func openReplica(ctx context.Context, cfg serveConfig) error {
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer a.Close()
	st, closeState, err := openIndexState(ctx, cfg.DataDir, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer closeState()
	return st.Save(ctx, "replica-test", "w")
}

// TestReplicasStartTogether: four replicas started at the same instant on an
// empty database all start, 20 times over (a fresh database each time). Before
// the versioned migration path, CREATE TABLE IF NOT EXISTS of API keys, audit
// or index state raced and one replica died with a duplicate pg_type key.
func TestReplicasStartTogether(t *testing.T) {
	const trials, replicas = 20, 4
	failed := 0
	for trial := range trials {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			url := testenv.EmptyDatabaseURL(t)
			cfgs := make([]serveConfig, replicas)
			for i := range cfgs {
				cfgs[i] = replicaConfig(t, url)
			}
			start := make(chan struct{})
			errs := make([]error, replicas)
			var wg sync.WaitGroup
			for i := range replicas {
				wg.Go(func() {
					<-start
					errs[i] = openReplica(context.Background(), cfgs[i])
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					failed++
					t.Errorf("replica %d did not start: %v", i+1, err)
				}
			}
		})
	}
	t.Logf("%d trials x %d replicas: %d failed starts", trials, replicas, failed)
}

// TestOlderBinaryRefusesNewerSchema: serve refuses a database a newer
// clearance migrated, naming both versions.
func TestOlderBinaryRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	url := testenv.EmptyDatabaseURL(t)
	cfg := replicaConfig(t, url)
	if err := openReplica(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int64
	if err := conn.QueryRow(ctx, `SELECT max(version_id) FROM `+pgschema.CoreTable).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+pgschema.CoreTable+` (version_id, is_applied) VALUES ($1, true)`, v+1); err != nil {
		t.Fatal(err)
	}
	_, err = openApp(ctx, replicaConfig(t, url), slog.New(slog.DiscardHandler))
	want := fmt.Sprintf("database schema version %d is newer than this binary's %d", v+1, v)
	if !errors.Is(err, pgschema.ErrNewerSchema) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "upgrade clearance") {
		t.Fatalf("start on a newer schema: %v\nwant %q", err, want)
	}
	// The indexer's state refuses it as well.
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := indexer.NewPGState(ctx, pool); !errors.Is(err, pgschema.ErrNewerSchema) {
		t.Fatalf("indexer state on a newer schema: %v", err)
	}
}
