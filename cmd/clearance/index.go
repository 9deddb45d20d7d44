package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/retrieval"
)

// exitRowsFailed is the exit status of an index run in which some rows failed
// (the run itself finished; the summary lists them).
const exitRowsFailed = 2

// indexSourceFlags choose where tickets come from; serve's --index-source can
// reuse them.
type indexSourceFlags struct {
	source    string
	pgURL     string
	pgTable   string
	pgQuery   string
	pgColumns string
	pgLag     time.Duration
	batch     int
	fieldMap  string
}

func (f *indexSourceFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.source, "source", "", "JSONL file or directory of *.jsonl files to index")
	fl.StringVar(&f.pgURL, "pg-url", "", "PostgreSQL URL of the source ticket table")
	fl.StringVar(&f.pgTable, "pg-table", "", "source table (schema.table allowed), read by (updated_at, id)")
	fl.StringVar(&f.pgQuery, "pg-query", "", "source query (a SELECT used as a subquery), instead of --pg-table")
	fl.StringVar(&f.pgColumns, "pg-columns", "", "column mapping, e.g. id=ticket_id,tenant=org,project=proj,deleted=is_deleted")
	fl.DurationVar(&f.pgLag, "pg-lag", 0, "re-read rows updated this long before the watermark (late-committing writers)")
	fl.StringVar(&f.fieldMap, "map", "", "JSONL field mapping, ticket field=source member, e.g. id=ticket_id,title=summary,body=description; -=member ignores a member")
	// 1024: a worker's shard (a batch split over the workers) is one engine
	// tuple write and one store lookup, and bigger shards make fewer of both
	// (docs/decisions/indexer-pipeline.md); the watermark still advances every
	// 1024 rows.
	fl.IntVar(&f.batch, "batch", 1024, "rows per batch (JSONL lines or PostgreSQL page size)")
}

// maxIndexBatch bounds --batch: a batch is held in memory (split over the
// workers, two shards of it in flight each).
const maxIndexBatch = 100_000

// open returns the source and a function releasing it.
func (f *indexSourceFlags) open(ctx context.Context) (indexer.Source, func(), error) {
	switch {
	case f.batch < 1 || f.batch > maxIndexBatch:
		return nil, nil, fmt.Errorf("--batch must be between 1 and %d, got %d", maxIndexBatch, f.batch)
	case f.source != "" && f.pgURL != "":
		return nil, nil, errors.New("set either --source or --pg-url, not both")
	case f.fieldMap != "" && f.source == "":
		return nil, nil, errors.New("--map applies to --source (JSONL); a PostgreSQL source maps with --pg-columns")
	case f.source != "":
		m, err := indexer.ParseFieldMap(f.fieldMap)
		if err != nil {
			return nil, nil, fmt.Errorf("--map: %w", err)
		}
		src, err := indexer.NewJSONL(indexer.JSONLConfig{Path: f.source, BatchSize: f.batch, Map: m})
		return src, func() {}, err
	case f.pgURL != "":
		cols, err := indexer.ParseColumns(f.pgColumns)
		if err != nil {
			return nil, nil, err
		}
		pool, err := pgxpool.New(ctx, f.pgURL)
		if err != nil {
			return nil, nil, fmt.Errorf("--pg-url: %w", err)
		}
		src, err := indexer.NewPG(indexer.PGConfig{Pool: pool, Table: f.pgTable, Query: f.pgQuery, Columns: cols, PageSize: f.batch, Lag: f.pgLag})
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		return src, pool.Close, nil
	}
	return nil, nil, errors.New("no source: set --source FILE|DIR or --pg-url with --pg-table or --pg-query")
}

// backendFlags are serve's backend flags (same names, same switches in
// config.go) for the commands that open the index outside serve: index and
// reconcile. Both use the engine: index writes ticket#project tuples when it is
// embedded, reconcile reads them.
type backendFlags struct {
	cfg serveConfig
}

func (f *backendFlags) register(cmd *cobra.Command) {
	c, fl := &f.cfg, cmd.Flags()
	c.registerData(fl, "data directory: embedded index, engine sqlite file, sync state",
		"PostgreSQL URL: pgvector store, engine datastore, sync state and single-runner lock live there")
	c.registerIndex(fl)
	c.registerEngine(fl)
}

// serveDefaults sets the serve-only settings that commands opening backends
// outside serve (index, reconcile, relationships) do not have to serve's
// defaults, so serve's validation (resolve) applies unchanged to the rest.
func (c *serveConfig) serveDefaults() {
	c.Addr, c.MaxTopK, c.MaxBodyBytes, c.TenantClaim = "127.0.0.1:0", 100, 1<<20, "tenant"
	c.RequestTimeout, c.SearchTimeout, c.LogLevel, c.LogFormat = 30*time.Second, 10*time.Second, "info", "text"
	d := defaultLimits()
	c.MaxConcurrentSearches, c.MaxPerPrincipal, c.SearchQueue, c.SearchQueueTimeout = d.MaxConcurrentSearches, d.MaxPerPrincipal, d.SearchQueue, d.SearchQueueTimeout
	c.RateLimit, c.RateBurst, c.RateLimitPrincipals = d.RateLimit, d.RateBurst, d.RateLimitPrincipals
	c.MaxConcurrentWrites, c.WriteQueue = d.MaxConcurrentWrites, d.WriteQueue
}

// open validates the flags with serve's rules and opens the embedder and the
// index.
func (f *backendFlags) open(ctx context.Context, log *slog.Logger) (retrieval.Embedder, retrieval.Store, error) {
	// The settings index and reconcile do not have take serve's defaults, so
	// serve's validation (resolve) applies unchanged to the rest.
	c := &f.cfg
	c.serveDefaults()
	if err := c.resolve(); err != nil {
		return nil, nil, err
	}
	emb, err := c.openEmbedder(ctx)
	if err != nil {
		return nil, nil, err
	}
	store, err := c.openStore(ctx, emb, log)
	if err != nil {
		return nil, nil, err
	}
	return emb, store, nil
}

func newIndexCommand() *cobra.Command {
	var (
		src       indexSourceFlags
		be        backendFlags
		server    string
		token     string
		full      bool
		fromStart bool
		every     time.Duration
		schedule  string
		workers   int
		words     int
		overlap   int
		bulk      bool
	)
	cmd := &cobra.Command{
		Use:   "index",
		Short: "Index tickets from a JSONL file, a PostgreSQL table or into a server",
		Long: `Index tickets into the vector store, incrementally: unchanged tickets (same
content hash) are skipped, deleted rows (deleted=true) are removed, moved tickets
change project without re-embedding. --full also deletes indexed tickets the
source no longer has. The watermark of each source is saved after its rows are
written, so an interrupted run resumes where it stopped.

With --server the rows are validated here and sent to a running server's
POST /v1/tickets instead. The credential is checked with the server before the
source is read (a key without the clearance:index scope fails at once). The
push's progress is kept in --data-dir per server URL and source, so pushing the
same source to another server sends everything; --from-start sends everything
again to the same server. With --every or --schedule the command keeps running
and indexes on that schedule (overlapping runs are skipped; with --database-url
a PostgreSQL advisory lock lets only one replica index at a time).

Exit status: 0 when every row was indexed, 2 when some rows failed (they are
listed), 1 on any other error.`,
		Example: `  clearance index --data-dir data --source testdata/tickets.jsonl
  clearance index --store pgvector --database-url $DATABASE_URL \
      --pg-url $TICKETS_DB --pg-table tickets --pg-columns id=ticket_id,tenant=org \
      --schedule "*/5 * * * *"
  clearance index --server https://clearance.internal --token $TOKEN --source export/
  clearance index --data-dir data --source export.jsonl \
      --map id=ticket_id,tenant=org,project=proj,title=summary,body=description,-=priority`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if every > 0 && schedule != "" {
				return errors.New("set either --every or --schedule")
			}
			tty := term.IsTerminal(int(os.Stderr.Fd()))
			log := newIndexLogger(cmd.ErrOrStderr(), tty)
			source, closeSource, err := src.open(ctx)
			if err != nil {
				return err
			}
			defer closeSource()
			var once func(ctx context.Context) (indexer.Summary, error)
			var lockURL string
			if server != "" {
				if cmd.Flags().Changed("bulk") {
					return errors.New("--bulk applies to a local --store pgvector, not --server")
				}
				if full {
					return errors.New("--full is not available with --server: the server deletes tickets only when told (deleted=true rows)")
				}
				if token == "" {
					return errors.New("--server needs --token (a key or token with the clearance:index scope)")
				}
				state, err := indexer.NewFileState(be.cfg.DataDir)
				if err != nil {
					return err
				}
				once = func(ctx context.Context) (indexer.Summary, error) {
					bar := newProgress(cmd.ErrOrStderr(), tty, "pushing", log)
					defer bar.finish()
					sum, err := indexer.Push(ctx, indexer.PushConfig{Server: server, Token: token, State: state, FromStart: fromStart,
						Logger: log, Progress: bar.update}, source)
					if sum.Note != "" {
						sum.Note += fmt.Sprintf(" (progress in %s; --from-start sends every row again)", state.Path())
					}
					return sum, err
				}
			} else {
				tuneGCForIndexing()
				emb, store, err := be.open(ctx, log)
				if err != nil {
					return err
				}
				defer store.Close()
				state, closeState, err := openIndexState(ctx, be.cfg.DataDir, be.cfg.DatabaseURL)
				if err != nil {
					return err
				}
				defer closeState()
				lockURL = be.cfg.DatabaseURL
				// With the embedded engine clearance owns the ticket#project tuples,
				// so the index run writes them with the tickets (a remote engine
				// gets them from the source system).
				var tuples indexer.TupleWriter
				if be.cfg.Engine == engineEmbedded {
					engine, err := be.cfg.openEngine(ctx, log)
					if err != nil {
						return err
					}
					defer engine.Close()
					tuples = engine
				}
				var bulkFlag *bool // nil: automatic (bulk.go)
				if cmd.Flags().Changed("bulk") {
					if _, ok := store.(bulkLoader); !ok && bulk {
						return errors.New("--bulk applies to --store pgvector")
					}
					if bulk && (every > 0 || schedule != "") {
						return errors.New("--bulk is for one run, not with --every or --schedule (an empty store is bulk-loaded by its first run anyway)")
					}
					bulkFlag = &bulk
				}
				once = func(ctx context.Context) (indexer.Summary, error) {
					return bulkIndexRun(ctx, store, bulkFlag, log, cmd.ErrOrStderr(), tty, func(ctx context.Context) (indexer.Summary, error) {
						bar := newProgress(cmd.ErrOrStderr(), tty, "indexing", log)
						defer bar.finish()
						ix, err := indexer.New(indexer.Config{
							Store: store, Embedder: emb, State: state, Full: full, Workers: workers, Tuples: tuples,
							Chunker: indexer.Chunker{Words: words, Overlap: overlap}, Logger: log, Progress: bar.update,
						})
						if err != nil {
							return indexer.Summary{}, err
						}
						return ix.Run(ctx, source)
					})
				}
			}
			out := cmd.OutOrStdout()
			job := func(ctx context.Context) error {
				sum, err := once(ctx)
				if err == nil || sum.Seen > 0 {
					// A run that failed before reading a row (a refused credential)
					// has only its error to say.
					printSummary(out, sum, server != "")
				}
				if err != nil {
					return err
				}
				if sum.Failed > 0 {
					return exitError{code: exitRowsFailed}
				}
				return nil
			}
			if every == 0 && schedule == "" {
				return job(ctx)
			}
			sched, err := indexer.NewScheduler(indexer.ScheduleConfig{
				Every: every, Cron: schedule, RunAtStart: true, Logger: log,
				Job: func(ctx context.Context) error {
					if err := job(ctx); err != nil && !errors.As(err, new(exitError)) {
						return err
					}
					return nil
				},
				Lock: lockFor(lockURL, source.Name()),
			})
			if err != nil {
				return err
			}
			log.Info("index schedule started", "source", source.Name(), "every", every, "schedule", schedule)
			sched.Start(ctx)
			<-ctx.Done()
			sched.Stop()
			return nil
		},
	}
	src.register(cmd)
	be.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&server, "server", "", "push to this clearance server (POST /v1/tickets) instead of a local store")
	fl.StringVar(&token, "token", "", "access token or API key for --server")
	fl.BoolVar(&full, "full", false, "full sync: read the whole source and delete indexed tickets it no longer has")
	fl.BoolVar(&fromStart, "from-start", false, "with --server: ignore the saved progress of this server and source and send every row")
	fl.DurationVar(&every, "every", 0, "keep running and index at this interval (e.g. 5m)")
	fl.StringVar(&schedule, "schedule", "", `keep running and index on this cron schedule (e.g. "*/5 * * * *", UTC)`)
	fl.IntVar(&workers, "workers", 0, "concurrent embedding workers (default: number of CPUs)")
	fl.IntVar(&words, "chunk-words", indexer.DefaultChunkWords, "words per chunk")
	fl.IntVar(&overlap, "chunk-overlap", indexer.DefaultChunkOverlap, "words shared by consecutive chunks")
	fl.BoolVar(&bulk, "bulk", false, "pgvector: drop the HNSW index for this run and build it after (default: only when the store is empty); --bulk=false never")
	return cmd
}

// openIndexState keeps watermarks in the shared database when there is one,
// else in the data dir.
func openIndexState(ctx context.Context, dataDir, databaseURL string) (indexer.State, func(), error) {
	if databaseURL == "" {
		st, err := indexer.NewFileState(dataDir)
		return st, func() {}, err
	}
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("--database-url: %w", err)
	}
	st, err := indexer.NewPGState(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return st, pool.Close, nil
}

// lockFor returns the single-runner lock of a source when the backend is a
// shared database, else nil.
func lockFor(url, source string) indexer.Locker {
	if url == "" {
		return nil
	}
	return indexer.NewPGLock(url, source)
}

// newIndexLogger logs text to stderr; on a terminal only errors, since the
// progress bar and the summary say the rest.
func newIndexLogger(w io.Writer, tty bool) *slog.Logger {
	level := slog.LevelInfo
	if tty {
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// progress is a spinner with counts on a terminal; otherwise a log line at
// most every progressEvery.
type progress struct {
	bar  *progressbar.ProgressBar
	log  *slog.Logger
	last time.Time
}

const progressEvery = 10 * time.Second

func newProgress(w io.Writer, tty bool, what string, log *slog.Logger) *progress {
	if !tty {
		return &progress{log: log, last: time.Now()}
	}
	return &progress{bar: progressbar.NewOptions(-1,
		progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"),
		progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish(),
	)}
}

func (p *progress) update(s indexer.Summary) {
	if p.bar == nil {
		if time.Since(p.last) >= progressEvery {
			p.last = time.Now()
			p.log.Info("index progress", "source", s.Source, "seen", s.Seen, "embedded", s.Embedded,
				"unchanged", s.Unchanged, "failed", s.Failed, "chunks", s.Chunks, "chunks_per_s", int(s.ChunksPerSecond()))
		}
		return
	}
	p.bar.Describe(fmt.Sprintf("embedded %d, unchanged %d, failed %d, chunks %d", s.Embedded, s.Unchanged, s.Failed, s.Chunks))
	_ = p.bar.Set(s.Seen)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

func printSummary(w io.Writer, s indexer.Summary, push bool) {
	verb := "indexed"
	if push {
		verb = "pushed" // the counts are the server's
	}
	fmt.Fprintf(w, "%s %s: seen %d, embedded %d, unchanged %d, deleted %d, moved %d, failed %d, chunks %d (%.0f chunks/s) in %s\n",
		verb, s.Source, s.Seen, s.Embedded, s.Unchanged, s.Deleted, s.Moved, s.Failed, s.Chunks, s.ChunksPerSecond(), s.Duration.Round(time.Millisecond))
	if s.Note != "" {
		fmt.Fprintf(w, "  %s\n", s.Note)
	}
	for _, f := range s.Failures {
		fmt.Fprintf(w, "  failed %s\n", f)
	}
	if n := s.Failed - len(s.Failures); n > 0 {
		fmt.Fprintf(w, "  ... and %d more failed rows (see the log)\n", n)
	}
}

// indexGCPercent is the collector's target for local index runs when GOGC is
// not set.
const indexGCPercent = 400

// tuneGCForIndexing trades memory for CPU in a local index run. Its heap is
// small and bounded (the chunks in flight), and at Go's default GOGC of 100
// the collector took about a fifth of the process's CPU while loading 100k
// tickets into pgvector, CPU that PostgreSQL on the same cores was waiting
// for: at 400 the process used 2-3 s less CPU for 100k tickets, its peak RSS
// went from about 125 to 230 MB (docs/benchmarks.md). GOGC in the environment
// wins.
func tuneGCForIndexing() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(indexGCPercent)
	}
}
