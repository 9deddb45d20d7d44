// Package pgschema creates and upgrades every PostgreSQL table clearance owns,
// through one versioned migration path (pressly/goose) under one advisory lock,
// so any number of replicas may start at once on an empty or an older database.
//
// There are two migration sets, each with its own version table:
//
//   - Core (clearance_schema_version): API keys, the audit log, indexer
//     watermarks, audit page sessions. Every component on PostgreSQL applies it.
//   - Vector (clearance_vector_schema_version): the pgvector store. It needs the
//     vector extension and the embedding dimension, so only the store applies it;
//     a database used for audit and keys alone never needs pgvector.
//
// Neither table is goose's default goose_db_version, which OpenFGA's own
// migrations use when its datastore shares the database.
//
// A binary refuses a database whose schema is newer than the migrations it
// carries (ErrNewerSchema): it would otherwise read and write tables whose shape
// it does not know.
package pgschema

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed core/*.sql
var coreFS embed.FS

//go:embed vector/*.sql
var vectorFS embed.FS

// Version tables. Never rename a released one.
const (
	CoreTable   = "clearance_schema_version"
	VectorTable = "clearance_vector_schema_version"
)

// lockID is the session advisory lock every clearance migration holds (the
// first 8 bytes of SHA-256("clearance.schema"), big-endian). It differs from
// goose's default lock id, so clearance never waits on another goose user.
const lockID int64 = -0x1977f45a090bfc69

// lockTimeout bounds the wait for another replica's migration.
const lockTimeout = 5 * time.Minute

// ErrNewerSchema: the database was migrated by a newer clearance than this one.
var ErrNewerSchema = errors.New("database schema is newer than this binary")

// Migrate applies the core migrations (API keys, audit log, indexer state,
// audit page sessions) to the database of cc.
func Migrate(ctx context.Context, cc *pgx.ConnConfig, log *slog.Logger) error {
	sub, err := fs.Sub(coreFS, "core")
	if err != nil {
		return err
	}
	return run(ctx, cc, "core", CoreTable, sub, nil, 0, log)
}

// MigrateVector applies the pgvector store's migrations. dim is the embedding
// dimension its tables get when they are created (an existing database keeps
// its own; the store checks it against its metadata row).
func MigrateVector(ctx context.Context, cc *pgx.ConnConfig, dim int, log *slog.Logger) error {
	return migrateVector(ctx, cc, dim, 0, log)
}

// migrateVector applies the vector set up to version upTo (0: all of it); the
// upgrade tests stop at an older version to write rows in its shape first.
func migrateVector(ctx context.Context, cc *pgx.ConnConfig, dim int, upTo int64, log *slog.Logger) error {
	if dim <= 0 {
		return fmt.Errorf("pgschema: dimension %d", dim)
	}
	files, err := fs.Glob(vectorFS, "vector/*.sql")
	if err != nil {
		return err
	}
	var migs []*goose.Migration
	for _, name := range files {
		base := name[len("vector/"):]
		v, err := strconv.ParseInt(base[:strings.IndexByte(base, '_')], 10, 64)
		if err != nil {
			return fmt.Errorf("pgschema: migration file %s: %w", name, err)
		}
		b, err := vectorFS.ReadFile(name)
		if err != nil {
			return err
		}
		stmt := strings.ReplaceAll(string(b), "{{dim}}", strconv.Itoa(dim))
		// A Go migration, because the dimension is only known at run time; goose
		// runs it in a transaction like a SQL file.
		migs = append(migs, goose.NewGoMigration(v, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, stmt)
			return err
		}}, nil))
	}
	return run(ctx, cc, "vector", VectorTable, nil, migs, upTo, log)
}

func run(ctx context.Context, cc *pgx.ConnConfig, set, table string, fsys fs.FS, goMigs []*goose.Migration, upTo int64, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A database/sql handle of its own (goose speaks database/sql): one
	// connection holds the lock and runs the migrations, closed when done.
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	db.SetMaxOpenConns(2)
	opts := []goose.ProviderOption{
		goose.WithTableName(table),
		goose.WithSessionLocker(sessionLocker{}),
		goose.WithDisableGlobalRegistry(true),
	}
	if len(goMigs) > 0 {
		opts = append(opts, goose.WithGoMigrations(goMigs...))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, opts...)
	if err != nil {
		return fmt.Errorf("pgschema %s: %w", set, err)
	}
	latest := int64(0)
	for _, s := range p.ListSources() {
		latest = max(latest, s.Version)
	}
	// Up takes the lock, creates the version table if needed and applies what
	// is missing; on a newer database it has nothing to apply.
	var results []*goose.MigrationResult
	if upTo > 0 {
		results, err = p.UpTo(ctx, upTo)
	} else {
		results, err = p.Up(ctx)
	}
	if err != nil {
		return fmt.Errorf("pgschema %s: migrate: %w", set, err)
	}
	for _, r := range results {
		log.InfoContext(ctx, "database schema migrated", "set", set, "version", r.Source.Version, "duration", r.Duration.Round(time.Millisecond))
	}
	have, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("pgschema %s: read version: %w", set, err)
	}
	if have > latest {
		return fmt.Errorf("database schema version %d is newer than this binary's %d (table %s); upgrade clearance: %w",
			have, latest, table, ErrNewerSchema)
	}
	return nil
}

// lockPoll is how often a waiting replica tries the lock again.
const lockPoll = 100 * time.Millisecond

// acquire takes the schema lock on a session, polling pg_try_advisory_lock.
// Waiting in pg_advisory_lock instead would keep a statement (and its
// snapshot) open for the whole wait, and OpenFGA's migrations run CREATE INDEX
// CONCURRENTLY, which waits for every open snapshot in the database: the
// holder would wait for the waiters, a deadlock PostgreSQL cannot see because
// it closes through the client. goose's own locker polls for the same reason,
// but at one second at least; this one polls faster so replicas that start
// together do not idle.
func acquire(ctx context.Context, try func(ctx context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	for {
		ok, err := try(ctx)
		if err != nil {
			return fmt.Errorf("take the schema lock: %w", err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the schema lock (another replica is migrating): %w", ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// sessionLocker is goose's SessionLocker on clearance's lock id (acquire).
type sessionLocker struct{}

func (sessionLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	return acquire(ctx, func(ctx context.Context) (bool, error) {
		var ok bool
		err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, lockID).Scan(&ok)
		return ok, err
	})
}

func (sessionLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Closing the connection releases the lock too; this just does it sooner.
	_, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, lockID)
	return err
}

// Locked runs fn while holding the schema lock on the database of cc, for
// migrations clearance runs but does not own (OpenFGA's, for the embedded engine
// on PostgreSQL, which take no lock of their own): replicas starting together
// then apply them one after another. Connecting is retried for up to
// connectWait (a database still starting up), waiting for the lock for up to
// five minutes.
func Locked(ctx context.Context, cc *pgx.ConnConfig, connectWait time.Duration, fn func() error) error {
	conn, err := connectRetry(ctx, cc, connectWait)
	if err != nil {
		return fmt.Errorf("schema lock: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = acquire(ctx, func(ctx context.Context) (bool, error) {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, lockID).Scan(&ok)
		return ok, err
	})
	if err != nil {
		return err
	}
	// Closing the connection releases the lock, also when fn panics.
	return fn()
}

// connectRetry connects, retrying with backoff until wait has passed.
func connectRetry(ctx context.Context, cc *pgx.ConnConfig, wait time.Duration) (*pgx.Conn, error) {
	deadline := time.Now().Add(wait)
	backoff := 250 * time.Millisecond
	for {
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err == nil {
			return conn, nil
		}
		if time.Now().Add(backoff).After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		case <-ctx.Done():
			return nil, err
		}
	}
}
