package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/clearance-dev/clearance/authz"
	fgaembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/bench"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
)

type benchFlags struct {
	scale       string
	store       string
	engine      string
	databaseURL string
	out         string
	queries     int
	k           int
	naiveN      int
	timeout     time.Duration
	seed        uint64
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
tickets as the filter, clearance's planner, and the three parts of the floor alone
(ListObjects of projects, the filtered scan, BatchCheck of k). It reports latency
percentiles, recall@k against the exact visible top-k, leaks (checked with the
engine's Check), engine calls and candidates per query, as Markdown and JSON.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.Context(), cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.scale, "scale", "10k", "corpus size in chunks: 10k, 100k, 1m (or any number)")
	fl.StringVar(&f.store, "store", "embedded", "vector store: embedded")
	fl.StringVar(&f.engine, "engine", "sqlite", "embedded engine datastore: sqlite, postgres (needs --database-url) or memory")
	fl.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL URL for --engine postgres")
	fl.StringVar(&f.out, "out", "bench-out", "directory for report.md and report.json (and the engine's sqlite file)")
	fl.IntVar(&f.queries, "queries", 3, "queries per principal")
	fl.IntVar(&f.k, "k", 10, "results per query")
	fl.IntVar(&f.naiveN, "naive-n", 3000, "tenant-wide candidates the naive post-filter checks")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "deadline of one query; a strategy past it counts an error")
	fl.Uint64Var(&f.seed, "seed", 42, "seed of the generated org and queries")
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

func runBench(ctx context.Context, cmd *cobra.Command, f benchFlags) error {
	chunks, err := parseScale(f.scale)
	if err != nil {
		return err
	}
	if f.store != "embedded" {
		return fmt.Errorf("--store %q: bench supports embedded in this build", f.store)
	}
	if f.engine == fgaembedded.Postgres && f.databaseURL == "" {
		return fmt.Errorf("--engine postgres needs --database-url")
	}
	stderr := cmd.ErrOrStderr()
	tty := isTerminal(stderr)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	cfg := bench.DefaultOrgConfig(chunks)
	cfg.Seed = f.seed
	org := bench.GenerateOrg(cfg)
	st := org.Stats()
	fmt.Fprintf(stderr, "org: %d tenants, %d projects, %d tickets, %d chunks, %d tuples, %d principals\n",
		st.Tenants, st.Projects, st.Tickets, st.Chunks, st.Tuples, st.Viewers)

	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	engDir, err := os.MkdirTemp(f.out, "engine-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(engDir)
	eng, err := fgaembedded.New(ctx, fgaembedded.Config{
		Datastore: f.engine, DataDir: engDir, DatabaseURL: f.databaseURL,
		MaxTuplesPerWrite: 10000, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	defer eng.Close()
	emb := retrieval.NewHashing(retrieval.HashingConfig{Dim: 384})
	store, err := storeembedded.Open(ctx, storeembedded.Config{Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}, Logger: log})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer store.Close()

	prog := newBenchProgress(stderr, tty)
	corpus, load, err := bench.Load(ctx, org, eng, store, emb, 10000, prog.update)
	prog.finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "loaded: tuples %.1fs, embed %.1fs, store %.1fs (%.0f chunks/s)\n",
		load.EngineSeconds, load.EmbedSeconds, load.StoreSeconds, load.ChunksPerSec)

	strategies := []bench.Strategy{
		bench.FloorListObjects(eng),
		bench.FloorScan(store, eng),
		bench.FloorBatchCheck(store, eng),
		bench.NaivePostFilter(store, eng, f.naiveN),
		bench.ListObjectsOverTickets(store, eng),
	}
	strategies = append(strategies, plannerStrategies(eng, store, emb, log)...)
	prog = newBenchProgress(stderr, tty)
	rows, err := bench.Run(ctx, corpus, eng, emb, strategies, bench.RunConfig{
		K: f.k, QueriesPerViewer: f.queries, Seed: f.seed + 1, Timeout: f.timeout, Logger: log, Progress: prog.update,
	})
	prog.finish()
	if err != nil {
		return err
	}
	rep := &bench.Report{
		Time: time.Now(), Command: "clearance " + strings.Join(os.Args[1:], " "), Machine: bench.MachineDescription(),
		Scale: f.scale, Store: f.store, Engine: "embedded OpenFGA (" + f.engine + ")", K: f.k,
		Load: load, RSSBytes: rssBytes(), Org: st, Rows: rows,
	}
	if err := rep.WriteFiles(f.out); err != nil {
		return err
	}
	rep.WriteMarkdown(cmd.OutOrStdout())
	fmt.Fprintf(stderr, "wrote %s and %s\n", filepath.Join(f.out, "report.md"), filepath.Join(f.out, "report.json"))
	return nil
}

// plannerStrategies returns clearance's planner with the pre-filter cache off
// (every query lists projects) and warm (each principal's pre-filter cached by
// an untimed first query).
func plannerStrategies(eng authz.Engine, store retrieval.Store, emb retrieval.Embedder, log *slog.Logger) []bench.Strategy {
	coldLog, warmLog := &filter.MemoryLog{}, &filter.MemoryLog{}
	cold := filter.New(filter.Config{CacheSize: -1, Logger: log}, eng, store, emb, coldLog)
	warm := filter.New(filter.Config{Logger: log}, eng, store, emb, warmLog)
	return []bench.Strategy{
		bench.Planner("clearance (cold cache)", cold, coldLog, false),
		bench.Planner("clearance (warm cache)", warm, warmLog, true),
	}
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
