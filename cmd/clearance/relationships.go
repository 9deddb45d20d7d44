package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/clearance-dev/clearance/authz"
	fgaembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/tuplefile"
	"github.com/clearance-dev/clearance/client"
	"github.com/clearance-dev/clearance/internal/dirlock"
)

// engineFlags are the data and engine flags of serve, for commands that open
// only the relationship engine (relationships).
type engineFlags struct {
	cfg serveConfig
}

func (f *engineFlags) register(cmd *cobra.Command) {
	c, fl := &f.cfg, cmd.Flags()
	c.registerData(fl, "data directory: engine sqlite file (and, with --server, the progress of interrupted loads)",
		"PostgreSQL URL of the engine datastore")
	c.registerEngine(fl)
}

// open validates the flags with serve's rules and opens the engine. With the
// embedded engine on sqlite it first takes the data dir's lock (the one a
// serve on the embedded store holds): the sqlite file itself would admit a
// second process, but a running server counts only its own writes in its
// revision (authz.RevisionProcess), so its caches would not see these.
func (f *engineFlags) open(ctx context.Context, log *slog.Logger) (authz.Engine, func(), error) {
	c := &f.cfg
	c.serveDefaults()
	c.Store, c.Embedder, c.EmbeddingDim = storeEmbedded, embedderHashing, 384
	if err := c.resolve(); err != nil {
		return nil, nil, err
	}
	release := func() {}
	if c.Engine == engineEmbedded && c.EngineDatastore == fgaembedded.SQLite {
		dir := filepath.Join(c.DataDir, "index")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, nil, err
		}
		lock, err := dirlock.Acquire(filepath.Join(dir, "LOCK"), "data dir")
		if err != nil {
			return nil, nil, fmt.Errorf("%w; while a server runs on it, use --server URL --token T", err)
		}
		release = func() { lock.Close() }
	}
	e, err := c.openEngine(ctx, log)
	if err != nil {
		release()
		return nil, nil, err
	}
	return e, func() { e.Close(); release() }, nil
}

// target names where tuples go, for the progress key and the summary: the
// server URL, or the engine's datastore (never a password).
func (f *engineFlags) target(server string) string {
	c := &f.cfg
	switch {
	case server != "":
		return "server " + strings.TrimRight(server, "/")
	case c.OpenFGAURL != "":
		return "openfga " + c.OpenFGAURL + " store " + c.OpenFGAStoreID
	case c.DatabaseURL != "":
		if u, err := url.Parse(c.DatabaseURL); err == nil {
			u.User = nil
			return "database " + u.String()
		}
		return "database"
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		abs = c.DataDir
	}
	return "data-dir " + abs
}

// tupleWriter is what a load writes through: the engine (data dir) or the
// server's POST /v1/relationships.
type tupleWriter interface {
	Write(ctx context.Context, writes, deletes []authz.Tuple) error
}

// serverWriter sends batches through the Go client.
type serverWriter struct{ c *client.Client }

func (w serverWriter) Write(ctx context.Context, writes, deletes []authz.Tuple) error {
	_, err := w.c.WriteRelationships(ctx, toClient(writes), toClient(deletes))
	return err
}

func toClient(ts []authz.Tuple) []client.Tuple {
	if len(ts) == 0 {
		return nil
	}
	out := make([]client.Tuple, len(ts))
	for i, t := range ts {
		out[i] = client.Tuple{User: t.User, Relation: t.Relation, Object: t.Object}
		if t.Condition != nil {
			out[i].Condition = &client.Condition{Name: t.Condition.Name, Context: t.Condition.Context}
		}
	}
	return out
}

func newRelationshipsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "relationships",
		Short: "Write, delete or read relationship tuples in bulk (files or stdin)",
		Long: `Load an organisation's relationships without code. write and delete read tuples
from a file or stdin: an OpenFGA store file (.fga.yaml, its top-level tuples), JSONL
(one {"user","relation","object"[,"condition"]} a line, the API's tuple shape) or
CSV (user,relation,object[,condition[,context JSON]], an optional header line).

Every tuple is checked against the authorization model first: one bad tuple
writes nothing, and each bad one is reported with its line. Then the tuples go
in batches (at most 1000 per call) to the engine in --data-dir/--database-url,
or with --server to a running server's POST /v1/relationships (a credential
with the clearance:admin scope). The progress of a load is saved after each
batch, keyed by the target and the source's content, so an interrupted load run
again resumes where it stopped.`,
	}
	cmd.AddCommand(newRelationshipsLoadCommand("write"), newRelationshipsLoadCommand("delete"), newRelationshipsReadCommand())
	return cmd
}

type loadOptions struct {
	op      string // "write" or "delete"
	format  string
	server  string
	token   string
	batch   int
	restart bool
}

func newRelationshipsLoadCommand(op string) *cobra.Command {
	var (
		opt = loadOptions{op: op}
		ef  engineFlags
	)
	verb := map[string]string{"write": "Write", "delete": "Delete"}[op]
	cmd := &cobra.Command{
		Use:   op + " [FILE|-]",
		Short: verb + " the tuples of a file (or stdin) after checking every one against the model",
		Example: fmt.Sprintf(`  clearance relationships %[1]s --data-dir data org.fga.yaml
  clearance relationships %[1]s --server https://clearance.internal --token $ADMIN tuples.csv
  export-tuples | clearance relationships %[1]s --format jsonl -`, op),
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := "-"
			if len(args) == 1 {
				name = args[0]
			}
			return runLoad(cmd, opt, &ef, name)
		},
	}
	ef.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&opt.format, "format", "", "yaml, jsonl or csv (default: from the file name, or sniffed from stdin)")
	fl.StringVar(&opt.server, "server", "", "send to this clearance server (POST /v1/relationships) instead of the engine in --data-dir")
	fl.StringVar(&opt.token, "token", "", "access token or API key with the clearance:admin scope, for --server")
	fl.IntVar(&opt.batch, "batch", client.MaxTuplesPerCall, "tuples per write call (at most 1000)")
	fl.BoolVar(&opt.restart, "restart", false, "ignore the saved progress of this load and start from the first tuple")
	return cmd
}

// maxReported bounds the invalid tuples listed (the count is always given).
const maxReported = 20

func runLoad(cmd *cobra.Command, opt loadOptions, ef *engineFlags, name string) error {
	ctx := cmd.Context()
	if opt.batch < 1 || opt.batch > client.MaxTuplesPerCall {
		return fmt.Errorf("--batch %d: want 1..%d", opt.batch, client.MaxTuplesPerCall)
	}
	if opt.server != "" && opt.token == "" {
		return errors.New("--server needs --token (a key or token with the clearance:admin scope)")
	}
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	log := newIndexLogger(cmd.ErrOrStderr(), tty)

	src, err := openTupleSource(name, cmd.InOrStdin(), opt.format)
	if err != nil {
		return err
	}
	defer src.close()

	// Pass 1: every tuple against the model, nothing written yet.
	v, err := tuplefile.NewValidator(nil)
	if err != nil {
		return err
	}
	check := v.CheckWrite
	if opt.op == "delete" {
		check = v.CheckDelete
	}
	total, bad := 0, 0
	var report []string
	hash := sha256.New()
	rd, err := src.open(hash)
	if err != nil {
		return err
	}
	for e, err := range tuplefile.Read(rd, src.format) {
		if err == nil {
			err = check(e.Tuple)
			if err != nil {
				err = &tuplefile.LineError{Line: e.Line, Err: err}
			}
		}
		var le *tuplefile.LineError
		switch {
		case errors.As(err, &le):
			bad++
			if len(report) < maxReported {
				report = append(report, fmt.Sprintf("  %s:%d: %v", src.name, le.Line, le.Err))
			}
		case err != nil:
			return fmt.Errorf("read %s: %w", src.name, err)
		default:
			total++
		}
	}
	if _, err := io.Copy(io.Discard, rd); err != nil { // hash the whole content
		return fmt.Errorf("read %s: %w", src.name, err)
	}
	if bad > 0 {
		out := cmd.ErrOrStderr()
		for _, l := range report {
			fmt.Fprintln(out, l)
		}
		if bad > len(report) {
			fmt.Fprintf(out, "  ... and %d more\n", bad-len(report))
		}
		return fmt.Errorf("%s: %d invalid tuple(s); nothing was written", src.name, bad)
	}

	// The target.
	var w tupleWriter
	if opt.server != "" {
		c, err := client.New(client.Config{Server: opt.server, Credential: opt.token})
		if err != nil {
			return err
		}
		w = serverWriter{c}
	} else {
		engine, closeEngine, err := ef.open(ctx, log)
		if err != nil {
			return err
		}
		defer closeEngine()
		w = engine
	}
	target := ef.target(opt.server)
	prog, err := openLoadProgress(ef.cfg.DataDir)
	if err != nil {
		return err
	}
	key := loadKey(opt.op, target, hex.EncodeToString(hash.Sum(nil)))
	done := 0
	if opt.restart {
		if err := prog.clear(key); err != nil {
			return err
		}
	} else if done = prog.done(key); done > total {
		done = 0
	}
	if done > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "resuming %s of %s at tuple %d of %d (--restart starts over)\n", opt.op, src.name, done+1, total)
	}

	// Pass 2: batches, progress saved after each.
	start := time.Now()
	bar := newLoadBar(cmd.ErrOrStderr(), tty, total, opt.op, log)
	bar.set(done)
	rd, err = src.open(nil)
	if err != nil {
		return err
	}
	var (
		batch []authz.Tuple
		keys  = map[string]bool{}
		seen  int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var err error
		if opt.op == "delete" {
			err = w.Write(ctx, nil, batch)
		} else {
			err = w.Write(ctx, batch, nil)
		}
		if err != nil {
			bar.finish()
			return fmt.Errorf("%s tuples %d..%d of %s: %w (rerun the same command to resume)", opt.op, done+1, done+len(batch), src.name, err)
		}
		done += len(batch)
		batch = batch[:0]
		clear(keys)
		bar.set(done)
		return prog.save(key, loadEntry{Op: opt.op, Target: target, Source: src.name, Done: done, Total: total, Updated: time.Now().UTC()})
	}
	for e, err := range tuplefile.Read(rd, src.format) {
		if err != nil {
			return fmt.Errorf("read %s again: %w", src.name, err)
		}
		seen++
		if seen <= done {
			continue
		}
		// Checked again: a file changed between the passes must not slip an
		// unchecked tuple in (cheap next to the write).
		if err := check(e.Tuple); err != nil {
			return fmt.Errorf("%s:%d changed while loading: %w (rerun to check it again)", src.name, e.Line, err)
		}
		t := e.Tuple
		if opt.op == "delete" {
			t = tuplefile.ForDelete(t)
		}
		// One call must not name a tuple twice (OpenFGA refuses it): a
		// repeat starts the next call.
		k := t.Object + "#" + t.Relation + "@" + t.User
		if keys[k] || len(batch) == opt.batch {
			if err := flush(); err != nil {
				return err
			}
		}
		batch, keys[k] = append(batch, t), true
	}
	if err := flush(); err != nil {
		return err
	}
	bar.finish()
	if err := prog.clear(key); err != nil {
		return err
	}
	verb := map[string]string{"write": "wrote", "delete": "deleted"}[opt.op]
	fmt.Fprintf(cmd.OutOrStdout(), "%s %d tuples of %s in %s in %s\n", verb, total, src.name, target, time.Since(start).Round(time.Millisecond))
	return nil
}

// tupleSource is a file, or stdin spooled to a temporary file: validation and
// writing read it twice.
type tupleSource struct {
	name   string
	path   string
	temp   bool
	format tuplefile.Format
	f      *os.File
}

func openTupleSource(name string, stdin io.Reader, format string) (*tupleSource, error) {
	s := &tupleSource{name: name, path: name}
	if name == "-" {
		s.name = "stdin"
		tmp, err := os.CreateTemp("", "clearance-tuples-*")
		if err != nil {
			return nil, fmt.Errorf("spool stdin: %w", err)
		}
		s.path, s.temp = tmp.Name(), true
		_, err = io.Copy(tmp, stdin)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.close()
			return nil, fmt.Errorf("spool stdin: %w", err)
		}
	}
	if format != "" {
		f, err := tuplefile.ParseFormat(format)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("--format: %w", err)
		}
		s.format = f
		return s, nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		s.close()
		return nil, err
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	f.Close()
	fileName := name
	if s.temp {
		fileName = ""
	}
	s.format = tuplefile.Detect(fileName, head[:n])
	return s, nil
}

// open (re)opens the content from the start; with h, everything read is
// hashed too.
func (s *tupleSource) open(h io.Writer) (io.Reader, error) {
	if s.f != nil {
		s.f.Close()
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	s.f = f
	var r io.Reader = bufio.NewReaderSize(f, 64<<10)
	if h != nil {
		r = io.TeeReader(f, h)
	}
	return r, nil
}

func (s *tupleSource) close() {
	if s.f != nil {
		s.f.Close()
	}
	if s.temp {
		os.Remove(s.path)
	}
}

// loadProgress is relationships-progress.json in the data dir: how many
// tuples of each unfinished load were written. The key is the operation, the
// target and the sha256 of the source's content, so a changed file (or another
// server) starts over and the same stdin content resumes.
type loadProgress struct {
	path string
}

type loadEntry struct {
	Op      string    `json:"op"`
	Target  string    `json:"target"`
	Source  string    `json:"source"`
	Done    int       `json:"done"`
	Total   int       `json:"total"`
	Updated time.Time `json:"updated"`
}

const loadProgressFile = "relationships-progress.json"

func openLoadProgress(dataDir string) (*loadProgress, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("progress file: %w", err)
	}
	return &loadProgress{path: filepath.Join(dataDir, loadProgressFile)}, nil
}

func loadKey(op, target, contentHash string) string {
	h := sha256.Sum256([]byte(op + "\x00" + target + "\x00" + contentHash))
	return hex.EncodeToString(h[:16])
}

func (p *loadProgress) read() (map[string]loadEntry, error) {
	m := map[string]loadEntry{}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("progress file: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("progress file %s is damaged (remove it to start loads over): %w", p.path, err)
	}
	return m, nil
}

func (p *loadProgress) done(key string) int {
	m, err := p.read()
	if err != nil {
		return 0
	}
	return m[key].Done
}

func (p *loadProgress) save(key string, e loadEntry) error {
	return p.update(func(m map[string]loadEntry) { m[key] = e })
}

func (p *loadProgress) clear(key string) error {
	return p.update(func(m map[string]loadEntry) { delete(m, key) })
}

// update rewrites the file atomically (a crash leaves the old or the new one).
func (p *loadProgress) update(f func(map[string]loadEntry)) error {
	m, err := p.read()
	if err != nil {
		return err
	}
	f(m)
	if len(m) == 0 {
		if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("progress file: %w", err)
		}
		return nil
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("progress file: %w", err)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		return fmt.Errorf("progress file: %w", err)
	}
	return nil
}

// loadBar is a bar with the known total on a terminal, else a log line at
// most every progressEvery.
type loadBar struct {
	bar   *progressbar.ProgressBar
	log   *slog.Logger
	op    string
	total int
	last  time.Time
}

func newLoadBar(w io.Writer, tty bool, total int, op string, log *slog.Logger) *loadBar {
	b := &loadBar{log: log, op: op, total: total, last: time.Now()}
	if tty {
		b.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(op),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("tuples"),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish(),
		)
	}
	return b
}

func (b *loadBar) set(n int) {
	if b.bar != nil {
		_ = b.bar.Set(n)
		return
	}
	if time.Since(b.last) >= progressEvery {
		b.last = time.Now()
		b.log.Info("relationships progress", "op", b.op, "done", n, "total", b.total)
	}
}

func (b *loadBar) finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
	}
}

func newRelationshipsReadCommand() *cobra.Command {
	var (
		ef     engineFlags
		filter authz.TupleFilter
		output string
	)
	cmd := &cobra.Command{
		Use:   "read",
		Short: "Print the stored tuples matching a filter (JSONL or CSV, the formats write reads)",
		Long: `read prints the tuples stored in the engine of --data-dir/--database-url that
match the filter. OpenFGA reads need --object ("type:id", or "type:" for every
object of a type together with --user); --user and --relation narrow it. The
output is what write takes back. Reading goes to the engine directly: the HTTP
API has no tuple listing.`,
		Example: `  clearance relationships read --data-dir data --object project:web
  clearance relationships read --data-dir data --object project: --user user:anne --output csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "jsonl" && output != "csv" {
				return fmt.Errorf("--output %q: want jsonl or csv", output)
			}
			log := newIndexLogger(cmd.ErrOrStderr(), term.IsTerminal(int(os.Stderr.Fd())))
			engine, closeEngine, err := ef.open(cmd.Context(), log)
			if err != nil {
				return err
			}
			defer closeEngine()
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			cw := csv.NewWriter(out)
			enc := json.NewEncoder(out)
			for t, err := range engine.Read(cmd.Context(), filter) {
				if err != nil {
					return err
				}
				if output == "jsonl" {
					if err := enc.Encode(t); err != nil {
						return err
					}
					continue
				}
				rec := []string{t.User, t.Relation, t.Object}
				if t.Condition != nil {
					rec = append(rec, t.Condition.Name)
					if len(t.Condition.Context) > 0 {
						b, err := json.Marshal(t.Condition.Context)
						if err != nil {
							return err
						}
						rec = append(rec, string(b))
					}
				}
				if err := cw.Write(rec); err != nil {
					return err
				}
			}
			cw.Flush()
			return cw.Error()
		},
	}
	ef.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&filter.Object, "object", "", `object "type:id", or "type:" for every object of a type (needs --user)`)
	fl.StringVar(&filter.User, "user", "", `user "type:id" or "type:id#relation"`)
	fl.StringVar(&filter.Relation, "relation", "", "relation")
	fl.StringVar(&output, "output", "jsonl", "jsonl or csv")
	return cmd
}
