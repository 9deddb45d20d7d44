package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/pglog"
	"github.com/clearance-dev/clearance/authz"
	fgaembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/openfga"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/bench"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
)

type benchFlags struct {
	scale         string
	store         string
	engine        string
	audit         string
	databaseURL   string
	buildMemoryMB int
	openfgaToken  string
	listDeadline  time.Duration
	out           string
	queries       int
	samples       int
	k             int
	naiveN        int
	timeout       time.Duration
	seed          uint64
	quality       bool
	flowRuns      int
	flowOnly      bool
	// The remote server's ListUsers caps (as serve's flags).
	listUsersMax      int
	listUsersDeadline time.Duration
	// pgvector's plan choice (as serve's flags).
	pgvPlan      string
	pgvThreshold int
	pgvWorkers   int
}

func newBenchCommand() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark retrieval strategies side by side on a synthetic org",
		Long: `bench generates a synthetic multi-tenant org (tenants, teams, thousands of projects,
users who see 0.1% to 100% of their tenant, direct shares, blocks, agents with
grants) and a ticket corpus, loads it, and sends the same queries through every
strategy in one run: the naive post-filter of a tenant-wide top-N, ListObjects over
tickets as the filter, clearance's planner, and the floor (ListObjects of projects,
the filtered scan, BatchCheck of k) as one query and each part alone. It reports latency
percentiles, recall@k against the exact visible top-k, leaks (checked with the
engine's Check), engine calls and candidates per query, as Markdown and JSON.

Backends:
  --store embedded        the in-process vector store, in memory (default)
  --store pgvector        the pgvector store on --database-url
  --engine sqlite         embedded OpenFGA on a sqlite file in --out (default;
                          "embedded" is the same)
  --engine memory         embedded OpenFGA in memory (small scales only)
  --engine postgres       embedded OpenFGA on --database-url
  --engine http://HOST:PORT
                          a remote OpenFGA server (--openfga-token if it wants one)
  --audit postgres        the planner's audit records in the audit table on
                          --database-url (default: memory)

Nothing the bench writes touches existing data. With --database-url it creates a
schema named clearance_bench_<random> holding the pgvector tables and the embedded
engine's tables, and drops it (CASCADE) at the end, also after a failure or Ctrl-C;
only a killed process leaves it behind (drop it by hand). The vector extension is
created in the database's usual schema if it is missing, never in the bench schema.
On an OpenFGA server it creates a store named clearance-bench-<time>-<random> and
deletes it at the end (OpenFGA marks a deleted store; its tuples stay in the
server's datastore until the server purges them).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.Context(), cmd, f) },
	}
	fl := cmd.Flags()
	// Definition order, so the report's command line reads scale, store, engine first.
	fl.SortFlags = false
	fl.StringVar(&f.scale, "scale", "10k", "corpus size in chunks: 10k, 100k, 1m (or any number)")
	fl.StringVar(&f.store, "store", storeEmbedded, "vector store: embedded or pgvector (needs --database-url)")
	fl.StringVar(&f.engine, "engine", fgaembedded.SQLite, "relationship engine: embedded OpenFGA on sqlite (or embedded), postgres (needs --database-url) or memory, or the http(s) URL of an OpenFGA server")
	fl.StringVar(&f.audit, "audit", "memory", "where the planner's audit records go: memory, or postgres (the audit table on --database-url, as serve writes it)")
	fl.IntVar(&f.buildMemoryMB, "pgvector-build-memory-mb", 1024, "memory in MB for building --store pgvector's HNSW index (maintenance_work_mem); 2048+ at 1M chunks keeps the build in memory")
	fl.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL URL for --store pgvector and --engine postgres (the run gets its own schema, dropped at the end)")
	fl.StringVar(&f.openfgaToken, "openfga-token", "", "API token (preshared key) for the OpenFGA server of --engine URL")
	fl.DurationVar(&f.listDeadline, "openfga-list-deadline", openfga.DefaultServerListObjectsDeadline, "the OpenFGA server's --listObjects-deadline: a listing that lasts this long counts as truncated (an error)")
	fl.IntVar(&f.listUsersMax, "openfga-listusers-max-results", openfga.DefaultServerListUsersMaxResults, "the OpenFGA server's --listUsers-max-results (0: no cap, what the flow rows need at 100k and up); an answer this large counts as truncated")
	fl.DurationVar(&f.listUsersDeadline, "openfga-listusers-deadline", openfga.DefaultServerListUsersDeadline, "the OpenFGA server's --listUsers-deadline (0: none); a ListUsers lasting this long counts as truncated")
	fl.StringVar(&f.pgvPlan, "pgvector-plan", "auto", "--store pgvector's plan: auto, exact or hnsw (as serve's flag)")
	fl.IntVar(&f.pgvThreshold, "pgvector-exact-threshold", pgvector.DefaultExactThreshold, "largest number of allowed chunks --pgvector-plan auto ranks exactly (as serve's flag)")
	fl.IntVar(&f.pgvWorkers, "pgvector-exact-workers", 2, "parallel workers of one exact pgvector search (as serve's flag; 0: none)")
	fl.StringVar(&f.out, "out", "bench-out", "directory for report.md and report.json (and the engine's sqlite file)")
	fl.IntVar(&f.queries, "queries", 3, "queries per principal")
	fl.IntVar(&f.samples, "samples", 8, "times each query is timed for the floor and planner rows (their p99 needs samples; taken interleaved, one of each row per round; the report gives the cold/floor p99 ratio's 90% interval); the naive and ListObjects-over-tickets rows once")
	fl.IntVar(&f.k, "k", 10, "results per query")
	fl.IntVar(&f.naiveN, "naive-n", 3000, "tenant-wide candidates the naive post-filter checks")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "deadline of one query; a strategy past it counts an error")
	fl.Uint64Var(&f.seed, "seed", 42, "seed of the generated org and queries")
	fl.BoolVar(&f.quality, "quality", false, "measure retrieval quality instead: known-item success@1 and MRR, topical nDCG@10 and latency of the vector, lexical and hybrid modes at three visibility levels (embedded or pgvector store; --queries judged queries per kind and user)")
	fl.IntVar(&f.flowRuns, "flow-runs", 20, "flow checks per row of the flow benchmark (a tenant of its own, a user per 25 chunks); 0 skips it")
	fl.BoolVar(&f.flowOnly, "flow-only", false, "run only the flow benchmark (no corpus, no store)")
	return cmd
}

func parseScale(s string) (int, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1000, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1000000, strings.TrimSuffix(s, "m")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n*mult < 100 || n*mult > 5000000 {
		return 0, fmt.Errorf("--scale %q: want 10k, 100k, 1m or a number of chunks from 100 to 5m", s)
	}
	return n * mult, nil
}

// remoteEngine reports whether --engine names an OpenFGA server rather than an
// embedded datastore: anything that looks like a URL is parsed as one, so a typo
// such as http//host fails as a bad URL instead of as an unknown datastore.
func (f *benchFlags) remoteEngine() bool {
	e := strings.ToLower(f.engine)
	return strings.Contains(e, "://") || strings.HasPrefix(e, "http")
}

// resolve validates the flags before any work, with errors that name the flags.
func (f *benchFlags) resolve() (int, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	chunks, err := parseScale(f.scale)
	if err != nil {
		errs = append(errs, err)
	}
	usesDB := false
	switch f.store {
	case storeEmbedded:
	case storePGVector:
		usesDB = true
		if _, ok := pgvectorPlans[f.pgvPlan]; !ok {
			bad("--pgvector-plan %q: want auto, exact or hnsw", f.pgvPlan)
		}
		if f.pgvThreshold < 0 || f.pgvWorkers < 0 || f.pgvWorkers > 64 {
			bad("--pgvector-exact-threshold %d / --pgvector-exact-workers %d: want a positive number of chunks and 0 to 64 workers", f.pgvThreshold, f.pgvWorkers)
		}
		if f.databaseURL == "" {
			bad("--store pgvector needs --database-url")
		}
	default:
		bad("--store %q: want embedded or pgvector", f.store)
	}
	if f.remoteEngine() {
		// Neither message repeats an unparsable value: it may hold a password.
		if u, err := url.Parse(f.engine); err != nil {
			bad("--engine: not a parsable URL; want the http(s) URL of an OpenFGA server, e.g. http://127.0.0.1:8080")
		} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--engine %q: want the http(s) URL of an OpenFGA server, e.g. http://127.0.0.1:8080", u.Redacted())
		}
		if f.listDeadline <= 0 {
			bad("--openfga-list-deadline must be positive")
		}
		if f.listUsersMax < 0 || f.listUsersDeadline < 0 {
			bad("--openfga-listusers-max-results and --openfga-listusers-deadline must not be negative (0: the server has none)")
		}
	} else {
		if f.engine == engineEmbedded {
			f.engine = fgaembedded.SQLite
		}
		switch f.engine {
		case fgaembedded.SQLite, fgaembedded.Memory:
		case fgaembedded.Postgres:
			usesDB = true
			if f.databaseURL == "" {
				bad("--engine postgres needs --database-url")
			}
		default:
			bad("--engine %q: want embedded, sqlite, postgres, memory or the http(s) URL of an OpenFGA server", f.engine)
		}
		if f.openfgaToken != "" {
			bad("--openfga-token needs --engine <URL of an OpenFGA server>")
		}
	}
	switch f.audit {
	case "memory":
	case "postgres":
		usesDB = true
		if f.databaseURL == "" {
			bad("--audit postgres needs --database-url")
		}
	default:
		bad("--audit %q: want memory or postgres", f.audit)
	}
	if f.databaseURL != "" {
		if u, err := url.Parse(f.databaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			bad("--database-url: want postgres://user@host:port/db")
		} else if !usesDB {
			bad("--database-url is used only by --store pgvector, --engine postgres and --audit postgres")
		}
	}
	if f.flowOnly && f.quality {
		bad("--flow-only and --quality are two different runs: pick one")
	}
	if f.flowRuns < 0 || (f.flowOnly && f.flowRuns == 0) {
		bad("--flow-runs %d: want at least 1 (0 skips the flow benchmark, which --flow-only runs alone)", f.flowRuns)
	}
	if f.queries < 1 {
		bad("--queries %d: want at least 1", f.queries)
	}
	if f.samples < 1 || f.samples > 100 {
		bad("--samples %d: want 1..100", f.samples)
	}
	if f.k < 1 || f.k > 1000 {
		bad("--k %d: want 1..1000", f.k)
	}
	if f.naiveN < f.k {
		bad("--naive-n %d: want at least --k (%d)", f.naiveN, f.k)
	}
	if f.timeout <= 0 {
		bad("--timeout must be positive")
	}
	if f.out == "" {
		bad("--out must not be empty")
	}
	return chunks, errors.Join(errs...)
}

func runBench(ctx context.Context, cmd *cobra.Command, f benchFlags) (err error) {
	chunks, err := f.resolve()
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	tty := isTerminal(stderr)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// Everything the run creates is undone in reverse order, after a failure or
	// Ctrl-C too (on a context that is no longer cancelled).
	var cleanups []func(context.Context) error
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for i := len(cleanups) - 1; i >= 0; i-- {
			err = errors.Join(err, cleanups[i](cctx))
		}
	}()
	closer := func(c interface{ Close() error }) {
		cleanups = append(cleanups, func(context.Context) error { return c.Close() })
	}

	var (
		org    *bench.Org
		st     bench.OrgStats
		judged []bench.QualityQuery
	)
	if !f.flowOnly {
		cfg := bench.DefaultOrgConfig(chunks)
		cfg.Seed = f.seed
		org = bench.GenerateOrg(cfg)
		if f.quality {
			judged = bench.PlantJudgments(org, f.queries, f.seed+2)
		}
		st = org.Stats()
		fmt.Fprintf(stderr, "org: %d tenants, %d projects, %d tickets, %d chunks, %d tuples, %d principals\n",
			st.Tenants, st.Projects, st.Tickets, st.Chunks, st.Tuples, st.Viewers)
	}

	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}

	var schema *benchSchema
	if f.databaseURL != "" {
		schema, err = createBenchSchema(ctx, f.databaseURL, f.store == storePGVector)
		if err != nil {
			return err
		}
		cleanups = append(cleanups, schema.drop)
		fmt.Fprintf(stderr, "postgres: schema %s for this run (dropped at the end)\n", schema.name)
	}

	var (
		eng            authz.Engine
		engineName     string
		tuplesPerWrite = 10000
	)
	if f.remoteEngine() {
		remote, err := openBenchOpenFGA(ctx, f, log)
		if err != nil {
			return err
		}
		cleanups = append(cleanups, remote.deleteStore)
		closer(remote.eng)
		fmt.Fprintf(stderr, "openfga: store %s (%s) on %s for this run (deleted at the end)\n", remote.name, remote.eng.StoreID(), redactURL(f.engine))
		// The adapter writes in the server's per-write limit (100 tuples); smaller
		// calls here only make the progress finer.
		eng, engineName, tuplesPerWrite = remote.eng, "OpenFGA server at "+redactURL(f.engine), 1000
	} else {
		engDir, err := os.MkdirTemp(f.out, "engine-")
		if err != nil {
			return err
		}
		cleanups = append(cleanups, func(context.Context) error { return os.RemoveAll(engDir) })
		if f.engine == fgaembedded.Postgres {
			// OpenFGA writes a postgres transaction row by row: 10,000 tuples took
			// longer than the engine's 10 s request timeout at 100k.
			tuplesPerWrite = 1000
		}
		ecfg := fgaembedded.Config{Datastore: f.engine, DataDir: engDir, MaxTuplesPerWrite: tuplesPerWrite, Logger: log}
		if f.engine == fgaembedded.Postgres {
			ecfg.DatabaseURL = schema.engineURL
		}
		e, err := fgaembedded.New(ctx, ecfg)
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		closer(e)
		eng, engineName = e, "embedded OpenFGA ("+f.engine+")"
	}

	rep := &bench.Report{
		Time: time.Now(), Command: benchCommandLine(cmd), Machine: bench.MachineDescription(),
		Scale: f.scale, Store: "none (--flow-only)", Engine: engineName, K: f.k,
	}
	if f.flowOnly {
		if err := runFlowBench(ctx, f, chunks, eng, tuplesPerWrite, rep, newBenchProgress(stderr, tty)); err != nil {
			return err
		}
		rep.RSSBytes = rssBytes()
		return writeBenchReport(cmd, f, rep)
	}

	emb := retrieval.NewHashing(retrieval.HashingConfig{Dim: 384})
	var (
		store     retrieval.Store
		storeName = f.store
	)
	switch f.store {
	case storePGVector:
		// The same construction as serve's --store pgvector, on the run's schema.
		sc := serveConfig{Store: storePGVector, DatabaseURL: schema.storeURL, PGVectorBuildMemoryMB: f.buildMemoryMB,
			PGVectorPlan: f.pgvPlan, PGVectorExactThreshold: f.pgvThreshold, PGVectorExactWorkers: f.pgvWorkers}
		store, err = sc.openStore(ctx, emb, log)
		storeName = fmt.Sprintf("pgvector %s (PostgreSQL %s)", schema.vectorVersion, schema.serverVersion)
	default:
		store, err = storeembedded.Open(ctx, storeembedded.Config{Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}, Logger: log})
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	closer(store)

	// The run's store is empty: pgvector loads it as `clearance index` loads an
	// empty store, without its HNSW index, built after the load (bulk.go).
	bl, bulk := store.(bulkLoader)
	if bulk {
		if err := bl.BeginBulk(ctx); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	prog := newBenchProgress(stderr, tty)
	corpus, load, err := bench.Load(ctx, org, eng, store, emb, tuplesPerWrite, prog.update)
	prog.finish()
	if err != nil {
		return err
	}
	if bulk {
		start := time.Now()
		built, err := withBuildProgress(ctx, store, stderr, tty, bl.EndBulk)
		if err != nil {
			return fmt.Errorf("store: build index: %w", err)
		}
		// The end of a bulk load builds what the load left out (pgvector: the
		// lexical index always, the HNSW index when a search needs it): timed
		// either way, and reported next to the load.
		load.IndexSeconds = time.Since(start).Seconds()
		if built {
			fmt.Fprintf(stderr, "built the store's search indexes in %.1fs\n", load.IndexSeconds)
		} else {
			fmt.Fprintf(stderr, "ended the bulk load in %.1fs; the HNSW index is deferred: no tenant is above the exact-search threshold\n", load.IndexSeconds)
		}
	}
	fmt.Fprintf(stderr, "loaded: tuples %.1fs, embed %.1fs, store %.1fs (%.0f chunks/s)\n",
		load.EngineSeconds, load.EmbedSeconds, load.StoreSeconds, load.ChunksPerSec)
	if schema != nil {
		// A deployment's autovacuum analyzes freshly loaded tables within a minute
		// or so; the queries start right away, so give PostgreSQL's planner its
		// statistics now instead of measuring plans made without them.
		start := time.Now()
		if err := schema.analyze(ctx); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "analyzed schema %s in %.1fs\n", schema.name, time.Since(start).Seconds())
	}

	if err := settleRevision(ctx, eng, stderr); err != nil {
		return err
	}
	if f.quality {
		return runQuality(ctx, cmd, org, judged, eng, store, emb, log)
	}

	strategies := []bench.Strategy{
		bench.Floor(store, eng),
		bench.FloorListObjects(eng),
		bench.FloorScan(store, eng),
		bench.FloorBatchCheck(store, eng),
		bench.NaivePostFilter(store, eng, f.naiveN),
		bench.ListObjectsOverTickets(store, eng),
	}
	var durable audit.Log
	if f.audit == "postgres" {
		// The audit table as serve writes it (pglog), in the run's schema: every
		// planner search appends its record there before answering.
		l, err := pglog.Open(ctx, pglog.Config{URL: schema.engineURL, Logger: log})
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		closer(l)
		durable = l
	}
	strategies = append(strategies, plannerStrategies(eng, store, emb, durable, log)...)
	prog = newBenchProgress(stderr, tty)
	rows, err := bench.Run(ctx, corpus, eng, emb, strategies, bench.RunConfig{
		K: f.k, QueriesPerViewer: f.queries, Samples: f.samples, Seed: f.seed + 1, Timeout: f.timeout, Logger: log, Progress: prog.update,
	})
	prog.finish()
	if err != nil {
		return err
	}
	rep.Store, rep.Load, rep.RSSBytes, rep.Org, rep.Rows = storeName, load, rssBytes(), st, rows
	if f.flowRuns > 0 {
		if err := runFlowBench(ctx, f, chunks, eng, tuplesPerWrite, rep, newBenchProgress(stderr, tty)); err != nil {
			// The search rows are measured: keep them.
			return errors.Join(err, writeBenchReport(cmd, f, rep))
		}
	}
	return writeBenchReport(cmd, f, rep)
}

func writeBenchReport(cmd *cobra.Command, f benchFlags, rep *bench.Report) error {
	if err := rep.WriteFiles(f.out); err != nil {
		return err
	}
	rep.WriteMarkdown(cmd.OutOrStdout())
	fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s and %s\n", filepath.Join(f.out, "report.md"), filepath.Join(f.out, "report.json"))
	return nil
}

// runFlowBench loads the flow benchmark's tenant into the engine and measures
// flow checks next to one ListUsers of the destination alone.
func runFlowBench(ctx context.Context, f benchFlags, chunks int, eng authz.Engine, tuplesPerWrite int, rep *bench.Report, prog *benchProgress) error {
	fe, ok := eng.(filter.FlowEngine)
	if !ok {
		return errors.New("flow benchmark: the engine cannot list users")
	}
	var model *openfgav1.AuthorizationModel
	if m, ok := eng.(interface {
		Model() *openfgav1.AuthorizationModel
	}); ok {
		model = m.Model() // as serve does: the model the engine evaluates
	}
	o := bench.GenerateFlowOrg(chunks, f.seed)
	fmt.Fprintf(prog.w, "flow org: tenant fb, %d users, %d tickets, %d projects, %d tuples\n", o.Users, o.Tickets, len(o.Projects)+1, len(o.Tuples))
	rows, loadSeconds, err := bench.RunFlow(ctx, o, fe, model, tuplesPerWrite,
		bench.FlowConfig{Runs: f.flowRuns, Timeout: f.timeout, Seed: f.seed + 2}, prog.update)
	prog.finish()
	if err != nil {
		return err
	}
	rep.Flow, rep.FlowOrgTuples, rep.FlowLoadSeconds = rows, len(o.Tuples), loadSeconds
	return nil
}

// benchCommandLine is the command line for the report, rebuilt from the flags
// that were set so the database password and the OpenFGA token never reach it.
func benchCommandLine(cmd *cobra.Command) string {
	parts := []string{"clearance", "bench"}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		v := fl.Value.String()
		switch fl.Name {
		case "database-url", "engine":
			v = redactURL(v)
		case "openfga-token":
			v = "***"
		}
		if fl.Value.Type() == "bool" && v == "true" {
			parts = append(parts, "--"+fl.Name)
			return
		}
		parts = append(parts, "--"+fl.Name, v)
	})
	return strings.Join(parts, " ")
}

// benchSchema is the PostgreSQL schema one run keeps its tables in.
type benchSchema struct {
	adminURL  string
	name      string
	storeURL  string // search_path: the schema, then the vector extension's schema
	engineURL string // search_path: the schema alone, so OpenFGA's migrations
	// can never find (and reuse) the tables of a real deployment

	vectorVersion, serverVersion string
}

// createBenchSchema creates a fresh schema on databaseURL. With vector, the
// extension is created first if missing, outside the schema: dropping the schema
// must not drop an extension other tables may come to depend on.
func createBenchSchema(ctx context.Context, databaseURL string, vector bool) (*benchSchema, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("postgres at %s: %w", redactURL(databaseURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	s := &benchSchema{adminURL: databaseURL, name: "clearance_bench_" + hex.EncodeToString(rnd[:])}
	if err := conn.QueryRow(ctx, `SHOW server_version`).Scan(&s.serverVersion); err != nil {
		return nil, fmt.Errorf("postgres server version: %w", err)
	}
	// "15.20 (Debian 15.20-0+deb12u1)": the report needs the version only.
	s.serverVersion, _, _ = strings.Cut(s.serverVersion, " ")
	path := []string{pgx.Identifier{s.name}.Sanitize()}
	if vector {
		if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS vector`); err != nil {
			return nil, fmt.Errorf("create extension vector (is pgvector installed on the server?): %w", err)
		}
		var extSchema string
		if err := conn.QueryRow(ctx, `SELECT n.nspname, e.extversion FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'`).Scan(&extSchema, &s.vectorVersion); err != nil {
			return nil, fmt.Errorf("find extension vector: %w", err)
		}
		path = append(path, pgx.Identifier{extSchema}.Sanitize())
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{s.name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", s.name, err)
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("--database-url: %w", err)
	}
	withPath := func(p string) string {
		q := u.Query()
		q.Set("search_path", p)
		v := *u
		v.RawQuery = q.Encode()
		return v.String()
	}
	s.storeURL = withPath(strings.Join(path, ","))
	s.engineURL = withPath(path[0])
	return s, nil
}

// analyze refreshes the planner statistics of every table in the schema.
func (s *benchSchema) analyze(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return fmt.Errorf("postgres at %s: %w", redactURL(s.adminURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = $1`, s.name)
	if err != nil {
		return fmt.Errorf("list tables of %s: %w", s.name, err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list tables of %s: %w", s.name, err)
	}
	for _, t := range tables {
		if _, err := conn.Exec(ctx, `ANALYZE `+pgx.Identifier{s.name, t}.Sanitize()); err != nil {
			return fmt.Errorf("analyze %s.%s: %w", s.name, t, err)
		}
	}
	return nil
}

// drop removes the schema and everything the run put in it.
func (s *benchSchema) drop(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err == nil {
		_, err = conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{s.name}.Sanitize()+` CASCADE`)
		conn.Close(ctx)
	}
	if err != nil {
		return fmt.Errorf("drop schema %s (drop it by hand): %w", s.name, err)
	}
	return nil
}

// benchOpenFGA is the run's own store on a remote OpenFGA server.
type benchOpenFGA struct {
	eng  *openfga.Engine
	name string
}

// openBenchOpenFGA connects to the server of --engine with a store of the run's
// own (a unique name, so the adapter creates it): the bench never reads or
// writes a store that existed before.
func openBenchOpenFGA(ctx context.Context, f benchFlags, log *slog.Logger) (*benchOpenFGA, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := "clearance-bench-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(rnd[:])
	cfg := openfga.Config{
		URL: f.engine, StoreName: name, APIToken: f.openfgaToken,
		ServerListObjectsDeadline: f.listDeadline,
		ServerListUsersMaxResults: cmp.Or(f.listUsersMax, -1),
		ServerListUsersDeadline:   cmp.Or(f.listUsersDeadline, -1),
		Logger:                    log.With("component", "openfga"),
	}
	// Our own listing deadline must outlast the server's, or every long listing
	// ends on our side first.
	cfg.ListObjectsDeadline = max(openfga.DefaultListObjectsDeadline, f.listDeadline+5*time.Second)
	e, err := openfga.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("openfga at %s: %w", redactURL(f.engine), err)
	}
	return &benchOpenFGA{eng: e, name: name}, nil
}

// deleteStore deletes the run's store.
func (b *benchOpenFGA) deleteStore(ctx context.Context) error {
	if err := b.eng.DeleteStore(ctx); err != nil {
		return fmt.Errorf("delete openfga store %s (%s): %w", b.name, b.eng.StoreID(), err)
	}
	return nil
}

// settleRevision waits, for at most two minutes, until the engine can say its
// revision: right after the load, a change-log revision (PostgreSQL, a remote
// server) may hold more recent changes than one probe reads, and until the
// window has passed the caches would be bypassed for the first principals
// only, which is not what a deployment at rest sees.
func settleRevision(ctx context.Context, eng authz.Engine, w io.Writer) error {
	r, ok := eng.(authz.Revisioned)
	if !ok {
		return nil
	}
	start := time.Now()
	for {
		_, err := r.Revision(ctx)
		if err == nil {
			if d := time.Since(start); d > time.Second {
				fmt.Fprintf(w, "revision known after %.0fs\n", d.Seconds())
			}
			return nil
		}
		if time.Since(start) > 2*time.Minute {
			fmt.Fprintf(w, "revision still unknown after 2 min (%v): caches bypassed while it is\n", err)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// plannerStrategies returns clearance's planner with both caches off (every
// query lists projects and checks every candidate), with a warm pre-filter
// cache (each principal's listing cached by an untimed first query; decisions
// still checked), and with warm decisions too (the same first query also fills
// the decision cache, so a repeated query at the same revision checks nothing).
func plannerStrategies(eng authz.Engine, store retrieval.Store, emb retrieval.Embedder, durable audit.Log, log *slog.Logger) []bench.Strategy {
	coldLog, warmLog, decLog := &filter.MemoryLog{}, &filter.MemoryLog{}, &filter.MemoryLog{}
	sink := func(m *filter.MemoryLog) audit.Log {
		if durable == nil {
			return m
		}
		return teeLog{durable: durable, mem: m}
	}
	cold := filter.New(filter.Config{CacheSize: -1, DecisionCacheSize: -1, Logger: log}, eng, store, emb, sink(coldLog))
	warm := filter.New(filter.Config{DecisionCacheSize: -1, Logger: log}, eng, store, emb, sink(warmLog))
	dec := filter.New(filter.Config{Logger: log}, eng, store, emb, sink(decLog))
	return []bench.Strategy{
		bench.Planner("clearance (cold cache)", cold, coldLog, false),
		bench.Planner("clearance (warm cache)", warm, warmLog, true),
		bench.Planner("clearance (warm decisions)", dec, decLog, true),
	}
}

// teeLog appends to the durable audit log first, then to the in-memory one the
// bench reads the plan from (its id is the one the answer carries).
type teeLog struct {
	durable audit.Log
	mem     *filter.MemoryLog
}

func (t teeLog) Append(ctx context.Context, r *audit.Record) error {
	if err := t.durable.Append(ctx, r); err != nil {
		return err
	}
	return t.mem.Append(ctx, r)
}

type benchProgress struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	phase string
	last  time.Time
}

func newBenchProgress(w io.Writer, tty bool) *benchProgress {
	return &benchProgress{w: w, last: time.Now(), bar: func() *progressbar.ProgressBar {
		if !tty {
			return nil
		}
		return progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}()}
}

func (p *benchProgress) update(phase string, done, total int) {
	if p.bar == nil {
		if time.Since(p.last) >= 10*time.Second || done == total {
			p.last = time.Now()
			fmt.Fprintf(p.w, "%s: %d/%d\n", phase, done, total)
		}
		return
	}
	if phase != p.phase {
		p.phase = phase
		p.bar.ChangeMax(total)
		p.bar.Describe(phase)
	}
	_ = p.bar.Set(done)
}

func (p *benchProgress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// rssBytes reads the resident set size from /proc (Linux); 0 elsewhere.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(fields[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// runQuality is bench --quality: the judged queries of PlantJudgments through
// the planner in every mode, and hybrid with a few fusion settings besides the
// default. The decision cache is off so that every mode pays for its own
// checks; the pre-filter cache is warm, as in a serving process.
func runQuality(ctx context.Context, cmd *cobra.Command, org *bench.Org, judged []bench.QualityQuery, eng authz.Engine, store retrieval.Store, emb retrieval.Embedder, log *slog.Logger) error {
	if _, ok := store.(retrieval.LexicalSearcher); !ok {
		return fmt.Errorf("bench --quality: the store has no lexical index (use --store embedded or pgvector): %w", retrieval.ErrUnsupported)
	}
	planner := func(fc filter.FusionConfig) *filter.Planner {
		return filter.New(filter.Config{Logger: log, DecisionCacheSize: -1, Fusion: fc}, eng, store, emb, &filter.MemoryLog{})
	}
	pl := planner(filter.FusionConfig{})
	variants := []bench.QualityVariant{
		{Name: "vector", Mode: filter.ModeVector, Searcher: pl},
		{Name: "lexical", Mode: filter.ModeLexical, Searcher: pl},
		{Name: "hybrid", Mode: filter.ModeHybrid, Searcher: pl},
	}
	for _, fc := range qualityFusions {
		variants = append(variants, bench.QualityVariant{
			Name: qualityFusionName(fc),
			Mode: filter.ModeHybrid, Searcher: planner(fc),
		})
	}
	// One untimed pass fills the pre-filter cache, as a serving process has.
	for _, q := range judged {
		if _, err := pl.Search(ctx, q.Viewer.Principal, filter.Request{Query: q.Query, TopK: 10, Mode: filter.ModeVector}); err != nil {
			return err
		}
	}
	rows, err := bench.RunQuality(ctx, org, judged, variants)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s, %s\n\n", benchCommandLine(cmd), bench.MachineDescription())
	bench.WriteQualityMarkdown(cmd.OutOrStdout(), rows)
	return nil
}

// qualityFusionName names a fusion variant in the quality table.
func qualityFusionName(fc filter.FusionConfig) string {
	n := fmt.Sprintf("hybrid k=%d depth=%d w=%g/%g", fc.K, fc.Depth, fc.VectorWeight, fc.LexicalWeight)
	if fc.RanksOnly {
		n += " ranks only"
	}
	return n
}

// qualityFusions are the fusion settings bench --quality compares with the
// default.
var qualityFusions = []filter.FusionConfig{
	{K: filter.DefaultFusionK, Depth: filter.DefaultFusionDepth, VectorWeight: filter.DefaultFusionVectorWeight,
		LexicalWeight: filter.DefaultFusionLexicalWeight, RanksOnly: true},
	{K: 60, Depth: 10, VectorWeight: 1, LexicalWeight: 1},
	{K: 60, Depth: 20, VectorWeight: 1, LexicalWeight: 1},
	{K: 10, Depth: 10, VectorWeight: 1, LexicalWeight: 3},
	{K: 1, Depth: 10, VectorWeight: 1, LexicalWeight: 3},
	{K: 2, Depth: 20, VectorWeight: 1, LexicalWeight: 4},
}
