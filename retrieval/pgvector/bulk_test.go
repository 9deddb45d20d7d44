package pgvector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	neturl "net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

const bulkDim = 32

func bulkMeta() retrieval.IndexMeta { return retrieval.IndexMeta{Model: "bulk-test", Dim: bulkDim} }

// bulkTicket is ticket i of the bulk tests: two chunks of random unit vectors
// (seeded by i), in one of ten projects.
func bulkTicket(i int) (retrieval.Ticket, []retrieval.Chunk) {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	t := retrieval.Ticket{ID: fmt.Sprintf("T%06d", i), Tenant: "acme", Project: fmt.Sprintf("p%d", i%10), Title: "t", UpdatedAt: time.Unix(0, 0).UTC()}
	cs := make([]retrieval.Chunk, 2)
	for j := range cs {
		v := make([]float32, bulkDim)
		var n float32
		for k := range v {
			v[k] = float32(rng.NormFloat64())
			n += v[k] * v[k]
		}
		for k := range v {
			v[k] /= float32(math.Sqrt(float64(n)))
		}
		cs[j] = retrieval.Chunk{Ordinal: j, Text: "x", Vector: v}
	}
	return t, cs
}

func upsertRange(ctx context.Context, s *Store, from, to int) error {
	errs := make(chan error, to-from)
	sem := make(chan struct{}, 64)
	for i := from; i < to; i++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			t, cs := bulkTicket(i)
			errs <- s.Upsert(ctx, t, cs)
		}()
	}
	var err error
	for range to - from {
		err = errors.Join(err, <-errs)
	}
	return err
}

// checkExactAnswer searches the whole tenant (above ExactThreshold, so the
// auto plan would walk the graph) and wants plan, with the exact ranking.
func checkExactAnswer(t *testing.T, s *Store, want Plan) {
	t.Helper()
	ctx := t.Context()
	_, cs := bulkTicket(999_999)
	req := retrieval.SearchRequest{Vector: cs[0].Vector, Filter: retrieval.Filter{Tenant: "acme", AllProjects: true}, K: 10}
	res, err := s.Search(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Plan != want.String() || res.Exact != (want == PlanExact) {
		t.Fatalf("search: plan %s exact %v, want %s", res.Plan, res.Exact, want)
	}
	exact, _, err := s.search(ctx, s.pool, req, PlanExact)
	if err != nil {
		t.Fatal(err)
	}
	if want == PlanExact && !slices.EqualFunc(res.Hits, exact, func(a, b retrieval.Hit) bool { return a.TicketID == b.TicketID && a.Ordinal == b.Ordinal }) {
		t.Errorf("search without the index: %v, want the exact ranking %v", res.Hits, exact)
	}
	if len(res.Hits) != 10 {
		t.Errorf("%d hits, want 10", len(res.Hits))
	}
}

// TestBulkLoadIsExactUntilTheIndexIsBuilt: BeginBulk drops the HNSW index, the
// searches that would walk it rank exactly and say so, a second loader or
// builder is refused while the first holds the lock, and EndBulk builds a valid
// index that the HNSW plan then uses.
func TestBulkLoadIsExactUntilTheIndexIsBuilt(t *testing.T) {
	ctx := t.Context()
	s, url := openBulkStore(t)
	if err := upsertRange(ctx, s, 0, 100); err != nil {
		t.Fatal(err)
	}
	checkExactAnswer(t, s, PlanHNSW)
	if err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := s.IndexStatus(ctx); err != nil || st != IndexMissing {
		t.Fatalf("index status during bulk load: %s %v, want missing", st, err)
	}
	if err := upsertRange(ctx, s, 100, 600); err != nil {
		t.Fatal(err)
	}
	checkExactAnswer(t, s, PlanExact)

	other, err := Open(ctx, Config{DatabaseURL: url, Meta: bulkMeta(), ExactThreshold: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.BeginBulk(ctx); !errors.Is(err, ErrBulkBusy) {
		t.Errorf("second bulk load: %v, want ErrBulkBusy", err)
	}
	if built, err := other.BuildIndex(ctx); !errors.Is(err, ErrBulkBusy) || built {
		t.Errorf("build during a bulk load: %v %v, want ErrBulkBusy", built, err)
	}
	if err := s.BeginBulk(ctx); err == nil {
		t.Error("BeginBulk twice: no error")
	}

	if built, err := s.EndBulk(ctx); err != nil || !built {
		t.Fatalf("EndBulk: built %v, %v", built, err)
	}
	if st, err := s.IndexStatus(ctx); err != nil || st != IndexValid {
		t.Fatalf("index status after the bulk load: %s %v, want valid", st, err)
	}
	checkExactAnswer(t, s, PlanHNSW)
	// The lock is free again, and building a valid index is a no-op.
	if built, err := other.BuildIndex(ctx); err != nil || built {
		t.Errorf("BuildIndex on a valid index: built %v, %v", built, err)
	}
	if _, err := s.EndBulk(ctx); err == nil {
		t.Error("EndBulk without BeginBulk: no error")
	}

	// Closing a store in the middle of a bulk load does not hang on the
	// connection holding the lock, and frees the lock.
	if err := other.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- other.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close during a bulk load hangs")
	}
	// The server ends the closed session (and its lock) asynchronously.
	poll(t, "the closed store's lock", func() bool {
		err := s.BeginBulk(ctx)
		if err != nil && !errors.Is(err, ErrBulkBusy) {
			t.Fatalf("bulk load after the other store closed mid-load: %v", err)
		}
		return err == nil
	})
	if _, err := s.EndBulk(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBulkLoadDefersAnIndexNoSearchNeeds: when no tenant has more chunks than
// ExactThreshold every search is exact, so EndBulk leaves the index unbuilt
// (writes stay cheap) and searches neither use nor build it; once a tenant
// outgrows the threshold, the first search that needs the graph answers exactly
// and builds the index in the background.
func TestBulkLoadDefersAnIndexNoSearchNeeds(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, Config{DatabaseURL: testenv.DatabaseURL(t), Meta: bulkMeta(), ExactThreshold: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	if err := upsertRange(ctx, s, 0, 100); err != nil { // 200 chunks
		t.Fatal(err)
	}
	if built, err := s.EndBulk(ctx); err != nil || built {
		t.Fatalf("EndBulk under the threshold: built %v, %v, want deferred", built, err)
	}
	checkExactAnswer(t, s, PlanExact)
	if built, err := s.BuildIndex(ctx); err != nil || built {
		t.Fatalf("BuildIndex under the threshold: built %v, %v, want deferred", built, err)
	}
	if st, err := s.IndexStatus(ctx); err != nil || st != IndexMissing {
		t.Fatalf("index status: %s %v, want missing", st, err)
	}
	if err := upsertRange(ctx, s, 100, 200); err != nil { // 400 chunks
		t.Fatal(err)
	}
	checkExactAnswer(t, s, PlanExact) // starts the build
	poll(t, "the background build", func() bool {
		st, err := s.IndexStatus(ctx)
		return err == nil && st == IndexValid
	})
	checkExactAnswer(t, s, PlanHNSW)
}

// crashHelperEnv makes TestCrashHelper a bulk loader the crash tests kill.
const crashHelperEnv = "CLEARANCE_PGVECTOR_CRASH_HELPER"

// TestCrashHelper is not a test: run by the crash tests in a child process, it
// starts a bulk load of the tickets named by the environment and, in mode
// "build", ends it (building the index) before sleeping until it is killed;
// in mode "load" it keeps upserting.
func TestCrashHelper(t *testing.T) {
	url := os.Getenv(crashHelperEnv)
	if url == "" {
		t.Skip("run by the crash tests")
	}
	ctx := context.Background()
	n, _ := strconv.Atoi(os.Getenv(crashHelperEnv + "_N"))
	s, err := Open(ctx, Config{DatabaseURL: url, Meta: bulkMeta(), ExactThreshold: 10, BuildWorkers: 1, BuildMemoryMB: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	if os.Getenv(crashHelperEnv+"_MODE") == "load" {
		for i := 0; ; i += 100 {
			if err := upsertRange(ctx, s, i, i+100); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := upsertRange(ctx, s, 0, n); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EndBulk(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Hour)
}

// startCrashHelper runs TestCrashHelper in a child process. Its output is
// kept and logged under the calling test only if that test fails: written to
// the parent's stderr, the child's "=== RUN TestCrashHelper" landed in a
// failing package's output with nothing saying which test had failed.
func startCrashHelper(t *testing.T, url, mode string, n int) *exec.Cmd {
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", crashHelperApp)
	u.RawQuery = q.Encode()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+u.String(), crashHelperEnv+"_MODE="+mode, crashHelperEnv+"_N="+strconv.Itoa(n))
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("crash helper (mode %s) output:\n%s", mode, out.String())
		}
	})
	return cmd
}

// crashHelperApp is the application_name of the crash helper's sessions.
const crashHelperApp = "clearance-crash-helper"

// killCrashHelper kills the child and waits until the server has ended its
// sessions. Until then the killed process can still change the tables: a
// COMMIT it sent just before dying sits in its socket and is carried out
// (two searches of the same test saw different rows that way).
func killCrashHelper(t *testing.T, s *Store, child *exec.Cmd) {
	t.Helper()
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	poll(t, "the server to end the killed child's sessions", func() bool {
		var n int
		err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`, crashHelperApp).Scan(&n)
		return err == nil && n == 0
	})
}

// poll calls cond every 50 ms until it holds, failing the test after a minute.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitForIndex waits until the index is valid: built by the search that found
// it missing (in the background) or by BuildIndex here, whichever gets the lock.
func waitForIndex(t *testing.T, s *Store) {
	t.Helper()
	poll(t, "a valid index", func() bool {
		if _, err := s.BuildIndex(t.Context()); err != nil && !errors.Is(err, ErrBulkBusy) {
			t.Fatalf("BuildIndex: %v", err)
		}
		st, err := s.IndexStatus(t.Context())
		return err == nil && st == IndexValid
	})
}

// TestKilledBulkLoadLeavesAnExactStore kills (SIGKILL) a real process in the
// middle of a bulk load, before any index build: the store it leaves answers
// from the exact plan, and BuildIndex restores the index.
func TestKilledBulkLoadLeavesAnExactStore(t *testing.T) {
	ctx := t.Context()
	s, url := openBulkStore(t)
	child := startCrashHelper(t, url, "load", 0)
	poll(t, "the child's load", func() bool {
		st, err := s.Stats(ctx)
		return err == nil && st.Chunks >= 1000
	})
	killCrashHelper(t, s, child)
	if st, err := s.IndexStatus(ctx); err != nil || st != IndexMissing {
		t.Fatalf("index after the killed load: %s %v, want missing", st, err)
	}
	wantLexicalStatus(t, s.pool, "after the killed load", IndexMissing)
	checkExactAnswer(t, s, PlanExact)
	// The dead session's lock went with it.
	waitForIndex(t, s)
	checkExactAnswer(t, s, PlanHNSW)
	wantLexicalStatus(t, s.pool, "after BuildIndex", IndexValid)
}

// TestKilledIndexBuildIsDetectedAndRebuilt kills (SIGKILL) a real process while
// its CREATE INDEX CONCURRENTLY runs: the server aborts the build and leaves an
// INVALID index, searches rank exactly, and BuildIndex drops it and builds a
// valid one.
//
// The build is held in its wait for writers by a transaction of the test's
// that may write the table, taken once the child's load has begun (its
// BeginBulk's DROP INDEX CONCURRENTLY would wait for it too) and released
// only after the server has ended the dead child's session. Without the hold
// the test raced the build under load: a build that ended between two polls
// was never seen, and one that ended between the poll and the kill left a
// valid index.
func TestKilledIndexBuildIsDetectedAndRebuilt(t *testing.T) {
	ctx := t.Context()
	s, url := openBulkStore(t)
	child := startCrashHelper(t, url, "build", 10000)
	poll(t, "the child's load", func() bool {
		st, err := s.Stats(ctx)
		return err == nil && st.Chunks > 0
	})
	hold := holdWriterLock(t, url, "clearance_vector_chunks")
	building := func() bool {
		var n int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_progress_create_index
WHERE relid = 'clearance_vector_chunks'::regclass`).Scan(&n)
		return err == nil && n > 0
	}
	poll(t, "the child's index build", building)
	// client_connection_check_interval: the server notices the dead client
	// while the build waits for the hold, and aborts it.
	killCrashHelper(t, s, child)
	if building() {
		t.Fatal("the killed child's build still runs")
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.IndexStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != IndexInvalid {
		t.Fatalf("index after the killed build: %s, want invalid", st)
	}
	var valid bool
	if err := s.pool.QueryRow(ctx, `SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass`, hnswIndex).Scan(&valid); err != nil || valid {
		t.Fatalf("pg_index.indisvalid: %v %v, want false", valid, err)
	}
	checkExactAnswer(t, s, PlanExact)
	waitForIndex(t, s)
	if st, err := s.IndexStatus(ctx); err != nil || st != IndexValid {
		t.Fatalf("index after BuildIndex: %s %v", st, err)
	}
	var n int
	// One graph: the invalid one was dropped, not left beside the new one.
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = 'clearance_vector_chunks'::regclass AND a.amname = 'hnsw'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("HNSW indexes on the chunk table: %d %v, want 1", n, err)
	}
	checkExactAnswer(t, s, PlanHNSW)
}

// openBulkStore opens a store on a fresh database with a threshold of 10
// chunks, so the bulk tests' small loads already want the HNSW plan; it is
// closed when the test ends.
func openBulkStore(t *testing.T) (*Store, string) {
	t.Helper()
	url := testenv.DatabaseURL(t)
	s, err := Open(t.Context(), Config{DatabaseURL: url, Meta: bulkMeta(), ExactThreshold: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, url
}

// TestBuildProgressReportsARunningBuild: while an index build runs, any store
// on the database sees it (which index, phase and counters from PostgreSQL);
// before and after, none. The build is held in its first phase by a
// transaction that may write the table, which CREATE INDEX CONCURRENTLY waits
// for: the chunk table for the HNSW build; one lexical partition for the
// lexical build, whose other partitions are built meanwhile and counted done.
func TestBuildProgressReportsARunningBuild(t *testing.T) {
	for _, c := range []struct{ index, hold string }{
		{"hnsw", "clearance_vector_chunks"},
		{"lexical", lexicalPartition(0)},
	} {
		t.Run(c.index, func(t *testing.T) {
			ctx := t.Context()
			s, url := openBulkStore(t)
			if err := upsertRange(ctx, s, 0, 100); err != nil {
				t.Fatal(err)
			}
			if err := s.BeginBulk(ctx); err != nil {
				t.Fatal(err)
			}
			if _, running, err := s.BuildProgress(ctx); err != nil || running {
				t.Fatalf("progress with no build: running %v, %v", running, err)
			}
			tx := holdWriterLock(t, url, c.hold)
			built := make(chan error, 1)
			go func() {
				ok, err := s.EndBulk(ctx)
				if err == nil && !ok {
					err = errors.New("EndBulk did not build")
				}
				built <- err
			}()
			other, err := Open(ctx, Config{DatabaseURL: url, Meta: bulkMeta(), ExactThreshold: 10})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			var seen BuildProgress
			poll(t, "the build in progress", func() bool {
				p, running, err := other.BuildProgress(ctx)
				if err != nil {
					t.Fatal(err)
				}
				seen = p
				if c.index == "lexical" {
					// Held on partition 0, after the others are built.
					return running && p.BlocksDone > 0 && p.BlocksDone < p.BlocksTotal
				}
				return running
			})
			if seen.Index != c.index || seen.Phase == "" {
				t.Errorf("progress of the held build: %+v, want index %s with a phase", seen, c.index)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-built; err != nil {
				t.Fatal(err)
			}
			if p, running, err := other.BuildProgress(ctx); err != nil || running {
				t.Fatalf("progress after the build: running %v %+v, %v", running, p, err)
			}
		})
	}
}

// TestBuildOutgrowingItsMemoryIsLogged: pgvector's notice that a build no
// longer fits in maintenance_work_mem (and goes on on disk, many times slower)
// reaches the operator as a warning.
func TestBuildOutgrowingItsMemoryIsLogged(t *testing.T) {
	ctx := t.Context()
	var logs syncBuffer
	s, err := Open(ctx, Config{DatabaseURL: testenv.DatabaseURL(t), Meta: bulkMeta(), ExactThreshold: 10, BuildMemoryMB: 1,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	if err := upsertRange(ctx, s, 0, 3000); err != nil { // 6,000 chunks: a graph of several MB
		t.Fatal(err)
	}
	if built, err := s.EndBulk(ctx); err != nil || !built {
		t.Fatalf("EndBulk: built %v, %v", built, err)
	}
	if out := logs.String(); !strings.Contains(out, "outgrew its memory") || !strings.Contains(out, "build_memory_mb=1") {
		t.Fatalf("no warning about the build's memory in the log:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// holdWriterLock opens a transaction on a connection of its own holding a
// writer's lock on table, which CREATE INDEX CONCURRENTLY on it waits for;
// the caller commits or rolls it back to let a build go on (the test's end
// rolls it back otherwise).
func holdWriterLock(t *testing.T, url, table string) pgx.Tx {
	t.Helper()
	ctx := t.Context()
	writer, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { writer.Close(context.Background()) })
	tx, err := writer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `LOCK TABLE `+table+` IN ROW EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return tx
}

// wantLexicalStatus fails the test unless the lexical indexes taken together
// are in state want.
func wantLexicalStatus(t *testing.T, q querier, when string, want IndexStatus) {
	t.Helper()
	if st, err := lexicalIndexStatus(context.Background(), q); err != nil || st != want {
		t.Fatalf("lexical index %s: %s %v, want %s", when, st, err, want)
	}
}
