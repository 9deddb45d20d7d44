// Package embedded runs OpenFGA v1.22.1 in process (pkg/server) as clearance's
// relationship engine, on a sqlite file (default), PostgreSQL or memory (tests).
//
// New runs the datastore migrations, creates the store when it is missing and writes
// authz.ModelDSL when the store's latest model differs, so starting twice writes
// nothing new. OpenFGA's silent listing caps are lifted (no result limit, no server
// deadline) and replaced by a deadline this package owns and detects.
package embedded

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"github.com/openfga/openfga/pkg/encoder"
	"github.com/openfga/openfga/pkg/server"
	serverconfig "github.com/openfga/openfga/pkg/server/config"
	"github.com/openfga/openfga/pkg/storage"
	"github.com/openfga/openfga/pkg/storage/memory"
	"github.com/openfga/openfga/pkg/storage/migrate"
	"github.com/openfga/openfga/pkg/storage/postgres"
	"github.com/openfga/openfga/pkg/storage/sqlcommon"
	"github.com/openfga/openfga/pkg/storage/sqlite"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	sqlitedriver "modernc.org/sqlite"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/internal/fga"
	"github.com/clearance-dev/clearance/internal/pgschema"
)

// Datastore kinds.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
	Memory   = "memory"
)

// Defaults used when a Config field is zero.
const (
	DefaultStoreName               = "clearance"
	DefaultMaxChecksPerBatchCheck  = 50
	DefaultBatchConcurrency        = 4
	DefaultMaxTuplesPerWrite       = 10_000
	DefaultListObjectsDeadline     = 30 * time.Second
	DefaultListUsersDeadline       = 30 * time.Second
	DefaultRequestTimeout          = 10 * time.Second
	DefaultDatastorePingTimeout    = 5 * time.Second
	DefaultDatastoreStartupTimeout = 30 * time.Second
	DefaultConnMaxIdleTime         = 30 * time.Second
	DefaultMaxConcurrentReads      = 8
	sqliteFile                     = "openfga.db"
	changelogPageSize              = 1000
)

// DefaultMaxOpenConns is the datastore pool size when Config.MaxOpenConns is
// zero: 8 per core, at least 16. Each sqlite connection holds three
// descriptors (the file, its WAL and its shared-memory index); sqlite in WAL
// mode runs any number of readers next to one writer, and its queries are CPU
// work in this process, so more connections than a few per core only queue
// inside sqlite instead of in the pool.
func DefaultMaxOpenConns() int { return max(16, 8*runtime.GOMAXPROCS(0)) }

// DefaultMaxConcurrentChecks bounds the checks one BatchCheck call runs at
// once when Config.MaxConcurrentChecks is zero: 4 per core, at least 8.
func DefaultMaxConcurrentChecks() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

// Config configures the embedded engine.
type Config struct {
	// Datastore is SQLite (default), Postgres or Memory (tests only: loading large
	// tuple sets takes quadratic time).
	Datastore string
	// DataDir holds the sqlite file (openfga.db) unless SQLitePath is set.
	DataDir string
	// SQLitePath overrides the sqlite file path.
	SQLitePath string
	// DatabaseURL is the PostgreSQL URL for Postgres. OpenFGA's tables (store,
	// tuple, authorization_model, changelog, assertion, goose_db_version) live next to
	// the service's own tables and are migrated by OpenFGA's own migrations.
	DatabaseURL string
	// StoreName names the store that is found or created (default "clearance").
	StoreName string
	// ModelDSL overrides authz.ModelDSL (tests).
	ModelDSL string
	// WriteModel writes clearance's model as the store's latest even when the
	// store is not clearance's own (Postgres: a store named StoreName whose
	// latest model is another application's). Without it such a store is used
	// only if its latest model has every type and relation clearance needs.
	WriteModel bool
	// MaxChecksPerBatchCheck is OpenFGA's per-call batch limit; BatchCheck chunks to it.
	MaxChecksPerBatchCheck int
	// BatchConcurrency bounds the chunks of one BatchCheck in flight.
	BatchConcurrency int
	// MaxTuplesPerWrite is the datastore's per-transaction tuple limit. Larger
	// writes are validated as a whole, then written in chunks of this size.
	MaxTuplesPerWrite int
	// ListObjectsDeadline bounds one ListObjects; reaching it ends the listing with
	// authz.ErrTruncated.
	ListObjectsDeadline time.Duration
	// ListUsersDeadline bounds one ListUsers; reaching it is authz.ErrTruncated.
	ListUsersDeadline time.Duration
	// RequestTimeout bounds Check, BatchCheck, Write and each Read page.
	RequestTimeout time.Duration
	// StartupTimeout bounds waiting for the database at start (migrations and first
	// connection, retried with backoff).
	StartupTimeout time.Duration
	// ChangelogWindow (Postgres only) is how far back each revision probe
	// re-reads OpenFGA's change log to catch writes of other processes that
	// committed out of id order: at least the longest write (RequestTimeout of
	// every replica) plus clock skew. Default 30s.
	ChangelogWindow time.Duration
	// MaxOpenConns bounds the datastore's connection pool (sqlite and
	// postgres; default DefaultMaxOpenConns). A query that finds the pool full
	// waits for a connection until its deadline. Without a bound, 100
	// concurrent searches opened 20,000 sqlite descriptors (issue 14).
	MaxOpenConns int
	// MaxIdleConns is how many idle connections the pool keeps (default a
	// quarter of MaxOpenConns, at least 2); ConnMaxIdleTime closes idle ones
	// after that long (default 30 s), so a burst's connections are given back.
	MaxIdleConns    int
	ConnMaxIdleTime time.Duration
	// MaxConcurrentChecks bounds the checks one BatchCheck call runs at once
	// (default DefaultMaxConcurrentChecks); BatchConcurrency of them run at
	// once per call, so one call runs at most their product.
	MaxConcurrentChecks int
	// MaxConcurrentReads bounds the datastore reads one Check or ListObjects
	// call has in flight (default 8; OpenFGA's own default is unbounded).
	MaxConcurrentReads int
	// SQLiteUnpinnedStatistics leaves sqlite's planner without the tuple
	// statistics the engine pins (benchmarks and tests that compare plans only).
	SQLiteUnpinnedStatistics bool
	// Logger receives OpenFGA's logs (info demoted to debug). Nil: discard.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	c.Datastore = cmp.Or(c.Datastore, SQLite)
	c.StoreName = cmp.Or(c.StoreName, DefaultStoreName)
	c.ModelDSL = cmp.Or(c.ModelDSL, authz.ModelDSL)
	c.MaxChecksPerBatchCheck = cmp.Or(c.MaxChecksPerBatchCheck, DefaultMaxChecksPerBatchCheck)
	c.BatchConcurrency = cmp.Or(c.BatchConcurrency, DefaultBatchConcurrency)
	c.MaxTuplesPerWrite = cmp.Or(c.MaxTuplesPerWrite, DefaultMaxTuplesPerWrite)
	c.ListObjectsDeadline = cmp.Or(c.ListObjectsDeadline, DefaultListObjectsDeadline)
	c.ListUsersDeadline = cmp.Or(c.ListUsersDeadline, DefaultListUsersDeadline)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.StartupTimeout = cmp.Or(c.StartupTimeout, DefaultDatastoreStartupTimeout)
	c.MaxOpenConns = cmp.Or(c.MaxOpenConns, DefaultMaxOpenConns())
	c.MaxIdleConns = cmp.Or(c.MaxIdleConns, max(2, c.MaxOpenConns/4))
	c.MaxIdleConns = min(c.MaxIdleConns, c.MaxOpenConns)
	c.ConnMaxIdleTime = cmp.Or(c.ConnMaxIdleTime, DefaultConnMaxIdleTime)
	c.MaxConcurrentChecks = cmp.Or(c.MaxConcurrentChecks, DefaultMaxConcurrentChecks())
	c.MaxConcurrentReads = cmp.Or(c.MaxConcurrentReads, DefaultMaxConcurrentReads)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Engine is OpenFGA in process. It implements authz.Engine and authz.Revisioned.
type Engine struct {
	cfg        Config
	srv        *server.Server
	ds         storage.OpenFGADatastore
	sqlitePath string
	storeID    string
	modelID    string
	validator  *fga.Validator
	revision   atomic.Uint64
	changes    changeLog      // what moved revision, for ChangedObjects
	changelog  *fga.Changelog // nil: the datastore admits only this process
	closeOnce  sync.Once
	model      *openfgav1.AuthorizationModel
	// clearanceModel: the model in use is authz.ModelDSL.
	clearanceModel bool
}

var (
	_ authz.Engine           = (*Engine)(nil)
	_ authz.Revisioned       = (*Engine)(nil)
	_ authz.ClearanceModeled = (*Engine)(nil)
	_ authz.ChangeLister     = (*Engine)(nil)
)

// New opens the datastore (running its migrations), starts the OpenFGA server in
// process, and makes sure the store and the current model exist.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.MaxChecksPerBatchCheck < 0 || cfg.BatchConcurrency < 0 || cfg.MaxTuplesPerWrite < 0 ||
		cfg.MaxOpenConns < 0 || cfg.MaxIdleConns < 0 || cfg.ConnMaxIdleTime < 0 || cfg.MaxConcurrentChecks < 0 || cfg.MaxConcurrentReads < 0 {
		return nil, clearance.Invalid("authz.limits", "batch, write, pool and concurrency limits must not be negative")
	}
	cfg.defaults()
	ds, tokens, path, err := openDatastore(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServerWithOpts(
		server.WithDatastore(ds),
		server.WithContinuationTokenSerializer(tokens),
		server.WithLogger(zapLogger(cfg.Logger)),
		// OpenFGA's defaults cut listings at 1,000 results and 3 s without telling the
		// caller; we lift both and enforce (and detect) our own deadline.
		server.WithListObjectsMaxResults(0),
		server.WithListObjectsDeadline(0),
		// ListUsers has the same silent caps (1,000 users, 3 s): lifted too, and
		// bounded by ListUsersDeadline, which is detected.
		server.WithListUsersMaxResults(0),
		server.WithListUsersDeadline(0),
		server.WithMaxChecksPerBatchCheck(uint32(cfg.MaxChecksPerBatchCheck)),
		// `openfga run` leaves both of these as NewServerWithOpts does: 50 checks
		// of a batch at once and no bound on one call's concurrent datastore
		// reads. Every check in flight holds pool connections and dispatches
		// goroutines, so one top_k 100 search made thousands of both (issue 14:
		// 350,000 goroutines); bounded here, the pool bound is rarely reached.
		server.WithMaxConcurrentChecksPerBatchCheck(uint32(min(cfg.MaxConcurrentChecks, cfg.MaxChecksPerBatchCheck))),
		server.WithMaxConcurrentReadsForCheck(uint32(cfg.MaxConcurrentReads)),
		server.WithMaxConcurrentReadsForListObjects(uint32(cfg.MaxConcurrentReads)),
		server.WithMaxConcurrentReadsForListUsers(uint32(cfg.MaxConcurrentReads)),
		// `openfga run` enables the ListObjects pipeline through this experimental flag
		// by default; NewServerWithOpts does not, and without it listing a tenant's
		// tickets was 12x slower on the demo org.
		server.WithExperimentals(serverconfig.ExperimentalPipelineListObjects),
		// Changes newer than the horizon are hidden from ReadChanges; the revision
		// probe needs every committed change (0 is also OpenFGA's default).
		server.WithChangelogHorizonOffset(0),
		server.WithReadChangesMaxPageSize(changelogPageSize),
	)
	if err != nil {
		ds.Close()
		return nil, fmt.Errorf("start embedded openfga: %w", err)
	}
	e := &Engine{cfg: cfg, srv: srv, ds: ds, sqlitePath: path}
	if cfg.Datastore == Postgres {
		// Other processes may write to the same store: follow the shared log.
		e.changelog = fga.NewChangelog(fga.ChangelogConfig{
			Window:   cfg.ChangelogWindow,
			PageSize: changelogPageSize,
			Timeout:  cfg.RequestTimeout,
		}, e.readChanges)
	}
	if err := e.setup(ctx); err != nil {
		srv.Close()
		return nil, err
	}
	return e, nil
}

func openDatastore(cfg Config) (storage.OpenFGADatastore, encoder.ContinuationTokenSerializer, string, error) {
	log := zapLogger(cfg.Logger)
	sqlCfg := sqlcommon.NewConfig(
		sqlcommon.WithLogger(log),
		sqlcommon.WithMaxTuplesPerWrite(cfg.MaxTuplesPerWrite),
		sqlcommon.WithMaxTypesPerAuthorizationModel(100),
		sqlcommon.WithPingTimeout(DefaultDatastorePingTimeout),
		sqlcommon.WithPingRetryMaxElapsedTime(cfg.StartupTimeout),
		// Used by the postgres datastore's pgxpool (whose own default is
		// max(4, cores) connections); the sqlite *sql.DB is bounded below.
		sqlcommon.WithMaxOpenConns(cfg.MaxOpenConns),
		sqlcommon.WithMaxIdleConns(cfg.MaxIdleConns),
		sqlcommon.WithConnMaxIdleTime(cfg.ConnMaxIdleTime),
	)
	mig := migrate.MigrationConfig{
		Engine:      cfg.Datastore,
		Timeout:     cfg.StartupTimeout,
		PingTimeout: DefaultDatastorePingTimeout, // zero would make every ping fail
		Logger:      log,
	}
	switch cfg.Datastore {
	case Memory:
		return memory.New(memory.WithMaxTuplesPerWrite(cfg.MaxTuplesPerWrite)), encoder.NewStringContinuationTokenSerializer(), "", nil
	case SQLite:
		path := cfg.SQLitePath
		if path == "" {
			if cfg.DataDir == "" {
				return nil, nil, "", clearance.Invalid("authz.data_dir", "the sqlite datastore needs a data directory or a file path")
			}
			path = filepath.Join(cfg.DataDir, sqliteFile)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, nil, "", fmt.Errorf("create data dir: %w", err)
		}
		mig.URI = "file:" + path
		if err := migrate.RunMigrations(mig); err != nil {
			return nil, nil, "", fmt.Errorf("%w: migrate sqlite datastore: %w", authz.ErrUnavailable, err)
		}
		dsn, err := sqlite.PrepareDSN(sqliteDSN(path))
		if err != nil {
			return nil, nil, "", err
		}
		if err := tuneSQLite(context.Background(), dsn, !cfg.SQLiteUnpinnedStatistics); err != nil {
			return nil, nil, "", fmt.Errorf("%w: %w", authz.ErrUnavailable, err)
		}
		db := sql.OpenDB(&stmtCachingConnector{dsn: dsn, drv: &sqlitedriver.Driver{}, size: defaultStmtCacheSize})
		// OpenFGA's sqlite datastore sets no pool limits (database/sql's
		// default is unbounded): every concurrent query opened a connection.
		db.SetMaxOpenConns(cfg.MaxOpenConns)
		db.SetMaxIdleConns(cfg.MaxIdleConns)
		db.SetConnMaxIdleTime(cfg.ConnMaxIdleTime)
		ds, err := sqlite.NewWithDB(db, sqlCfg)
		if err != nil {
			db.Close()
			return nil, nil, "", fmt.Errorf("%w: open sqlite datastore: %w", authz.ErrUnavailable, err)
		}
		return ds, sqlcommon.NewSQLContinuationTokenSerializer(), path, nil
	case Postgres:
		if cfg.DatabaseURL == "" {
			return nil, nil, "", clearance.Invalid("authz.database_url", "the postgres datastore needs a database URL")
		}
		mig.URI = cfg.DatabaseURL
		cc, err := pgx.ParseConfig(cfg.DatabaseURL)
		if err != nil {
			return nil, nil, "", clearance.Invalid("authz.database_url", "%v", err)
		}
		// OpenFGA's migrations take no lock: under clearance's schema lock,
		// replicas starting together on an empty database apply them one at a time.
		if err := pgschema.Locked(context.Background(), cc, cfg.StartupTimeout, func() error { return migrate.RunMigrations(mig) }); err != nil {
			return nil, nil, "", fmt.Errorf("%w: migrate postgres datastore: %w", authz.ErrUnavailable, err)
		}
		ds, err := postgres.New(cfg.DatabaseURL, sqlCfg)
		if err != nil {
			return nil, nil, "", fmt.Errorf("%w: open postgres datastore: %w", authz.ErrUnavailable, err)
		}
		return ds, sqlcommon.NewSQLContinuationTokenSerializer(), "", nil
	default:
		return nil, nil, "", clearance.Invalid("authz.datastore", "unknown datastore %q (want sqlite, postgres or memory)", cfg.Datastore)
	}
}

// sqliteDSN opens the file with a busy timeout long enough for a large write of
// another connection (OpenFGA's default is 100 ms).
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(5000)"
}

// setup finds or creates the store and writes the model when it changed and
// the store is clearance's own (see fga.ChooseModel).
func (e *Engine) setup(ctx context.Context) error {
	want, err := authz.ParseModel(e.cfg.ModelDSL)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	stores, err := e.srv.ListStores(ctx, &openfgav1.ListStoresRequest{Name: e.cfg.StoreName, PageSize: wrapperspb.Int32(1)})
	if err != nil {
		return mapErr("list stores", err)
	}
	created := false
	if s := stores.GetStores(); len(s) > 0 {
		e.storeID = s[0].GetId()
	} else {
		c, err := e.srv.CreateStore(ctx, &openfgav1.CreateStoreRequest{Name: e.cfg.StoreName})
		if err != nil {
			return mapErr("create store", err)
		}
		e.storeID, created = c.GetId(), true
	}
	models, err := e.srv.ReadAuthorizationModels(ctx, &openfgav1.ReadAuthorizationModelsRequest{StoreId: e.storeID, PageSize: wrapperspb.Int32(1)})
	if err != nil {
		return mapErr("read models", err)
	}
	var latest *openfgav1.AuthorizationModel
	if m := models.GetAuthorizationModels(); len(m) > 0 {
		latest = m[0]
	}
	// A sqlite file or memory store is clearance's alone; on a shared
	// PostgreSQL the store is clearance's if it made it or its model says so.
	owned := e.cfg.Datastore != Postgres || created || latest == nil || fga.HasMarker(latest)
	write, err := fga.ChooseModel(fga.ModelStore{ID: e.storeID, Owned: owned, WriteAllowed: e.cfg.WriteModel}, want, latest)
	if err != nil {
		return err
	}
	use := latest
	if write {
		w, err := e.srv.WriteAuthorizationModel(ctx, &openfgav1.WriteAuthorizationModelRequest{
			StoreId:         e.storeID,
			SchemaVersion:   want.GetSchemaVersion(),
			TypeDefinitions: want.GetTypeDefinitions(),
			Conditions:      want.GetConditions(),
		})
		if err != nil {
			return mapErr("write model", err)
		}
		use = want
		e.modelID = w.GetAuthorizationModelId()
		e.cfg.Logger.Info("authorization model written", "store", e.storeID, "model", e.modelID)
	} else {
		e.modelID = latest.GetId()
		if !fga.SameModel(latest, want) {
			e.cfg.Logger.Warn("using the store's latest model, which is not clearance's: it has every type and relation clearance needs",
				"store", e.storeID, "model", e.modelID, "defined_differently", fga.Differing(want, latest))
		}
	}
	e.model = use
	if std, err := authz.Model(); err == nil {
		e.clearanceModel = fga.SameModel(use, std)
	}
	e.validator, err = fga.NewValidator(use)
	return err
}

// Model is the authorization model this engine evaluates (clearance's, or a
// foreign one that has what clearance needs). Callers must not change it.
func (e *Engine) Model() *openfgav1.AuthorizationModel { return e.model }

// ClearanceModel implements authz.ClearanceModeled.
func (e *Engine) ClearanceModel() bool { return e.clearanceModel }

// SQLitePath is the sqlite file in use ("" for other datastores).
func (e *Engine) SQLitePath() string { return e.sqlitePath }

// StoreID is the id of the store this engine uses.
func (e *Engine) StoreID() string { return e.storeID }

// ModelID implements authz.Engine.
func (e *Engine) ModelID() string { return e.modelID }

// Revision implements authz.Revisioned. On PostgreSQL, which other replicas
// share, it follows OpenFGA's change log; on sqlite (locked to this process) and
// memory it counts this engine's own writes, which is exact and free.
func (e *Engine) Revision(ctx context.Context) (authz.Revision, error) {
	if e.changelog != nil {
		rev, err := e.changelog.Revision(ctx)
		if err != nil {
			return rev, mapErr("read changes", err)
		}
		return rev, nil
	}
	return authz.Revision{Key: strconv.FormatUint(e.revision.Load(), 10), Source: authz.RevisionProcess}, nil
}

// readChanges reads one page of the store's change log (every type).
func (e *Engine) readChanges(ctx context.Context, token string, start time.Time, pageSize int) (fga.ChangePage, error) {
	req := &openfgav1.ReadChangesRequest{StoreId: e.storeID, PageSize: wrapperspb.Int32(int32(pageSize)), ContinuationToken: token}
	if token == "" && !start.IsZero() {
		req.StartTime = timestamppb.New(start)
	}
	resp, err := e.srv.ReadChanges(ctx, req)
	if err != nil {
		return fga.ChangePage{}, err
	}
	p := fga.ChangePage{Token: resp.GetContinuationToken(), Changes: make([]fga.Change, len(resp.GetChanges()))}
	for i, c := range resp.GetChanges() {
		k := c.GetTupleKey()
		p.Changes[i] = fga.Change{
			Time:      c.GetTimestamp().AsTime(),
			Operation: c.GetOperation().String(),
			Tuple:     authz.Tuple{User: k.GetUser(), Relation: k.GetRelation(), Object: k.GetObject()},
		}
	}
	return p, nil
}

// Close stops the server and closes the datastore.
func (e *Engine) Close() error {
	e.closeOnce.Do(e.srv.Close)
	return nil
}

// mapErr turns an OpenFGA status error into clearance's kinds: validation codes
// (OpenFGA's 2xxx range and InvalidArgument) are invalid input, anything else means
// the engine could not answer.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if ok {
		c := int(st.Code())
		if st.Code() == codes.InvalidArgument || (c >= 2000 && c < 3000) {
			return fmt.Errorf("%w: %s: %s", authz.ErrInvalidTuple, op, st.Message())
		}
		return fmt.Errorf("%w: %s: %s", authz.ErrUnavailable, op, st.Message())
	}
	return fmt.Errorf("%w: %s: %w", authz.ErrUnavailable, op, err)
}

func tupleKey(t authz.Tuple) (*openfgav1.TupleKey, error) {
	k := &openfgav1.TupleKey{User: t.User, Relation: t.Relation, Object: t.Object}
	if t.Condition != nil {
		k.Condition = &openfgav1.RelationshipCondition{Name: t.Condition.Name}
		if len(t.Condition.Context) > 0 {
			s, err := structpb.NewStruct(t.Condition.Context)
			if err != nil {
				return nil, fmt.Errorf("%w: condition context of %s: %w", authz.ErrInvalidTuple, t, err)
			}
			k.Condition.Context = s
		}
	}
	return k, nil
}

func tupleKeys(ts []authz.Tuple) ([]*openfgav1.TupleKey, error) {
	out := make([]*openfgav1.TupleKey, 0, len(ts))
	for _, t := range ts {
		k, err := tupleKey(t)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// request is what every query carries: contextual tuples, context with
// current_time, consistency.
type request struct {
	tuples      *openfgav1.ContextualTupleKeys
	context     *structpb.Struct
	consistency openfgav1.ConsistencyPreference
}

func (e *Engine) request(q authz.Query) (request, error) {
	if err := e.validator.ValidateAll(q.ContextualTuples, false); err != nil {
		return request{}, err
	}
	keys, err := tupleKeys(q.ContextualTuples)
	if err != nil {
		return request{}, err
	}
	ctx, err := structpb.NewStruct(q.WithCurrentTime())
	if err != nil {
		return request{}, fmt.Errorf("%w: query context: %w", clearance.ErrInvalid, err)
	}
	r := request{context: ctx, consistency: openfgav1.ConsistencyPreference_MINIMIZE_LATENCY}
	if len(keys) > 0 {
		r.tuples = &openfgav1.ContextualTupleKeys{TupleKeys: keys}
	}
	if q.Consistency == authz.HigherConsistency {
		r.consistency = openfgav1.ConsistencyPreference_HIGHER_CONSISTENCY
	}
	return r, nil
}

// Write implements authz.Engine. Every tuple is validated first, so an invalid one
// writes nothing even when the call is larger than one datastore transaction.
func (e *Engine) Write(ctx context.Context, writes, deletes []authz.Tuple) error {
	chunks, err := e.validator.PlanWrite(writes, deletes, e.cfg.MaxTuplesPerWrite)
	if err != nil {
		return err
	}
	for _, c := range chunks {
		req := &openfgav1.WriteRequest{StoreId: e.storeID, AuthorizationModelId: e.modelID}
		if len(c.Writes) > 0 {
			wk, err := tupleKeys(c.Writes)
			if err != nil {
				return err
			}
			req.Writes = &openfgav1.WriteRequestWrites{TupleKeys: wk, OnDuplicate: "ignore"}
		}
		if len(c.Deletes) > 0 {
			dk := make([]*openfgav1.TupleKeyWithoutCondition, len(c.Deletes))
			for i, d := range c.Deletes {
				dk[i] = &openfgav1.TupleKeyWithoutCondition{User: d.User, Relation: d.Relation, Object: d.Object}
			}
			req.Deletes = &openfgav1.WriteRequestDeletes{TupleKeys: dk, OnMissing: "ignore"}
		}
		err := e.call(ctx, func(ctx context.Context) error {
			_, err := e.srv.Write(ctx, req)
			return err
		})
		// Moved on failure too: a write that timed out may still have committed,
		// and a cache keyed by the revision must not outlive it.
		e.moved(c.Writes, c.Deletes)
		if err != nil {
			return mapErr("write", err)
		}
	}
	return nil
}

func (e *Engine) call(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	return f(ctx)
}

// Check implements authz.Engine.
func (e *Engine) Check(ctx context.Context, q authz.Query, c authz.Check) (bool, error) {
	r, err := e.request(q)
	if err != nil {
		return false, err
	}
	var allowed bool
	err = e.call(ctx, func(ctx context.Context) error {
		resp, err := e.srv.Check(ctx, &openfgav1.CheckRequest{
			StoreId:              e.storeID,
			AuthorizationModelId: e.modelID,
			TupleKey:             &openfgav1.CheckRequestTupleKey{User: c.User, Relation: c.Relation, Object: c.Object},
			ContextualTuples:     r.tuples,
			Context:              r.context,
			Consistency:          r.consistency,
		})
		allowed = resp.GetAllowed()
		return err
	})
	if err != nil {
		return false, mapErr("check", err)
	}
	return allowed, nil
}

// BatchCheck implements authz.Engine.
func (e *Engine) BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error) {
	r, err := e.request(q)
	if err != nil {
		return nil, err
	}
	return fga.Batch(ctx, len(checks), e.cfg.MaxChecksPerBatchCheck, e.cfg.BatchConcurrency, func(ctx context.Context, lo, hi int, out []bool) error {
		items := make([]*openfgav1.BatchCheckItem, 0, hi-lo)
		for i, c := range checks[lo:hi] {
			items = append(items, &openfgav1.BatchCheckItem{
				TupleKey:         &openfgav1.CheckRequestTupleKey{User: c.User, Relation: c.Relation, Object: c.Object},
				ContextualTuples: r.tuples,
				Context:          r.context,
				CorrelationId:    strconv.Itoa(i),
			})
		}
		var resp *openfgav1.BatchCheckResponse
		err := e.call(ctx, func(ctx context.Context) error {
			var err error
			resp, err = e.srv.BatchCheck(ctx, &openfgav1.BatchCheckRequest{
				StoreId:              e.storeID,
				AuthorizationModelId: e.modelID,
				Checks:               items,
				Consistency:          r.consistency,
			})
			return err
		})
		if err != nil {
			return mapErr("batch check", err)
		}
		res := resp.GetResult()
		return fga.Fill(out, lo, checks, func(id string) fga.Item {
			r, ok := res[id]
			if !ok {
				return fga.Item{}
			}
			if ie := r.GetError(); ie != nil {
				return fga.Item{Found: true, Err: ie.GetMessage()}
			}
			allowed := r.GetAllowed()
			return fga.Item{Found: true, Allowed: &allowed}
		})
	})
}

// ListObjects implements authz.Engine. It streams from OpenFGA; if the listing
// deadline (or the caller's context) ended the stream, the last element is an error
// wrapping authz.ErrTruncated.
func (e *Engine) ListObjects(ctx context.Context, q authz.Query, user, relation, objectType string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		r, err := e.request(q)
		if err != nil {
			yield("", err)
			return
		}
		ctx, cancel := context.WithTimeout(ctx, e.cfg.ListObjectsDeadline)
		defer cancel()
		st := &stream{ctx: ctx, ch: make(chan string, 256)}
		done := make(chan error, 1)
		go func() {
			defer close(st.ch)
			done <- e.srv.StreamedListObjects(&openfgav1.StreamedListObjectsRequest{
				StoreId:              e.storeID,
				AuthorizationModelId: e.modelID,
				Type:                 objectType,
				Relation:             relation,
				User:                 user,
				ContextualTuples:     r.tuples,
				Context:              r.context,
				Consistency:          r.consistency,
			}, st)
		}()
		prefix := objectType + ":"
		for obj := range st.ch {
			if len(obj) > len(prefix) && obj[:len(prefix)] == prefix {
				obj = obj[len(prefix):]
			}
			if !yield(obj, nil) {
				cancel()
				for range st.ch { //nolint:revive // drain so the server goroutine ends
				}
				return
			}
		}
		err = <-done
		if cerr := ctx.Err(); cerr != nil {
			// OpenFGA ends a stream quietly when its context ends: whatever came
			// before is a strict subset.
			yield("", fga.Truncated(objectType, relation, user, cerr))
			return
		}
		if err != nil {
			yield("", mapErr("list objects", err))
		}
	}
}

// stream adapts OpenFGA's server-streaming call to a channel.
type stream struct {
	ctx context.Context
	ch  chan string
}

var _ openfgav1.OpenFGAService_StreamedListObjectsServer = (*stream)(nil)

func (s *stream) Send(r *openfgav1.StreamedListObjectsResponse) error {
	select {
	case s.ch <- r.GetObject():
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}
func (s *stream) Context() context.Context     { return s.ctx }
func (s *stream) SetHeader(metadata.MD) error  { return nil }
func (s *stream) SendHeader(metadata.MD) error { return nil }
func (s *stream) SetTrailer(metadata.MD)       {}
func (s *stream) SendMsg(any) error            { return errors.New("not supported") }
func (s *stream) RecvMsg(any) error            { return errors.New("not supported") }

var _ grpc.ServerStream = (*stream)(nil)

// Read implements authz.Engine.
func (e *Engine) Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	return func(yield func(authz.Tuple, error) bool) {
		if err := fga.CheckFilter(f); err != nil {
			yield(authz.Tuple{}, err)
			return
		}
		token := ""
		for {
			var resp *openfgav1.ReadResponse
			err := e.call(ctx, func(ctx context.Context) error {
				var err error
				resp, err = e.srv.Read(ctx, &openfgav1.ReadRequest{
					StoreId:           e.storeID,
					TupleKey:          &openfgav1.ReadRequestTupleKey{User: f.User, Relation: f.Relation, Object: f.Object},
					PageSize:          wrapperspb.Int32(100),
					ContinuationToken: token,
					Consistency:       openfgav1.ConsistencyPreference_HIGHER_CONSISTENCY,
				})
				return err
			})
			if err != nil {
				yield(authz.Tuple{}, mapErr("read", err))
				return
			}
			for _, t := range resp.GetTuples() {
				k := t.GetKey()
				out := authz.Tuple{User: k.GetUser(), Relation: k.GetRelation(), Object: k.GetObject()}
				if c := k.GetCondition(); c != nil {
					out.Condition = &authz.Condition{Name: c.GetName(), Context: c.GetContext().AsMap()}
				}
				if !yield(out, nil) {
					return
				}
			}
			token = resp.GetContinuationToken()
			if token == "" {
				return
			}
		}
	}
}
