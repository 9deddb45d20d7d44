package indexer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
)

// crashChildEnv makes the test binary act as the indexer process of the kill
// tests; its value is a JSON crashSpec.
const crashChildEnv = "CLEARANCE_INDEXER_CRASH_CHILD"

// crashSpec tells the child what to index where.
type crashSpec struct {
	// DataDir holds the embedded store (and the file state of a JSONL source).
	DataDir string `json:"data_dir"`
	// JSONL is the source file, or PGURL the database whose app.issues table
	// is the source (the sync state then lives in that database too).
	JSONL string `json:"jsonl,omitempty"`
	PGURL string `json:"pg_url,omitempty"`
	// PGVectorURL, when set, is the database of a pgvector store used instead
	// of the embedded store (the sync state then lives there too).
	PGVectorURL string `json:"pgvector_url,omitempty"`
	Full        bool   `json:"full"`
}

// open opens the store the spec names.
func (spec crashSpec) open(ctx context.Context, compactBytes int64) (retrieval.Store, error) {
	emb := newEmbedder()
	meta := retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}
	if spec.PGVectorURL != "" {
		return pgvector.Open(ctx, pgvector.Config{DatabaseURL: spec.PGVectorURL, Meta: meta})
	}
	return embedded.Open(ctx, embedded.Config{DataDir: filepath.Join(spec.DataDir, "index"), Meta: meta, CompactBytes: compactBytes})
}

func crashChild(specJSON string) {
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, what+":", err)
		os.Exit(3)
	}
	var spec crashSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fail("spec", err)
	}
	ctx := context.Background()
	emb := newEmbedder()
	// A small compaction threshold, so compactions happen (and get killed)
	// during the test.
	s, err := spec.open(ctx, 256<<10)
	if err != nil {
		fail("open store", err)
	}
	var (
		src Source
		st  State
	)
	if spec.PGURL != "" {
		pool, err := pgxpool.New(ctx, spec.PGURL)
		if err != nil {
			fail("pool", err)
		}
		if st, err = NewPGState(ctx, pool); err != nil {
			fail("state", err)
		}
		if src, err = NewPG(PGConfig{Pool: pool, Table: "app.issues", Columns: pgTestColumns, PageSize: 20}); err != nil {
			fail("source", err)
		}
	} else {
		if spec.PGVectorURL != "" {
			var pool *pgxpool.Pool
			if pool, err = pgxpool.New(ctx, spec.PGVectorURL); err != nil {
				fail("pool", err)
			}
			st, err = NewPGState(ctx, pool)
		} else {
			st, err = NewFileState(spec.DataDir)
		}
		if err != nil {
			fail("state", err)
		}
		if src, err = NewJSONL(JSONLConfig{Path: spec.JSONL, BatchSize: 20}); err != nil {
			fail("source", err)
		}
	}
	ix, err := New(Config{
		Store: s, Embedder: emb, State: st, Chunker: Chunker{Words: 20, Overlap: 5}, Workers: 2, EmbedBatch: 16, Full: spec.Full,
		// Tell the parent each committed batch, so it can kill at a chosen
		// point of the run.
		Progress: func(Summary) { fmt.Println("batch") },
	})
	if err == nil {
		_, err = ix.Run(ctx, src)
	}
	if err == nil {
		err = s.Close()
	}
	if err != nil {
		fail("run", err)
	}
	os.Exit(0)
}

// crashPhase is one version of the source: write it, then kill and restart
// the indexer until a run finishes, and compare the store with want.
type crashPhase struct {
	name  string
	write func()
	want  map[string]retrieval.Ticket
	full  bool
}

// killAndResume runs the phases. Each run is killed with SIGKILL after a
// random number of committed batches plus up to 2 ms (so the kill lands
// anywhere: between batches, mid-embedding, mid-write, mid-compaction), until
// one run finishes on its own (at most 30 kills); then a last run completes.
func killAndResume(t *testing.T, spec crashSpec, r *rand.Rand, phases []crashPhase) {
	run := func(spec crashSpec, killAt int) (finished bool) {
		b, _ := json.Marshal(spec)
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+string(b))
		errs := &lockedBuffer{}
		cmd.Stderr = errs
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stdout)
		batches, killed := 0, false
		for lines.Scan() {
			if batches++; killAt > 0 && batches == killAt {
				time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond)
				killed = cmd.Process.Kill() == nil
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		err = cmd.Wait()
		if !killed && err != nil {
			t.Fatalf("indexer process failed: %v\n%s", err, errs.String())
		}
		return !killed || err == nil
	}
	for _, ph := range phases {
		ph.write()
		spec.Full = ph.full
		// A full sync starts over each time, so its kills range over the whole
		// run (75 batches, then the deletes); a resumed run's over its start.
		span := 20
		if ph.full {
			span = 80
		}
		kills := 0
		for kills < 30 && !run(spec, 1+r.IntN(span)) {
			kills++
		}
		run(spec, 0)
		t.Logf("%s: %d runs killed before one finished", ph.name, kills)
		s, err := spec.open(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		checkStore(t, s, ph.want, Chunker{Words: 20, Overlap: 5})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// crashVersions makes the three versions of a source the kill tests index:
// 1500 tickets; then edits, moves and deletions by flag; then a sixth of the
// rows gone (found by a full sync).
func crashVersions(r *rand.Rand, seed uint64, later time.Time) (v1, v2, v3 []Row) {
	v1 = genTickets(seed, 1500, 150)
	v2 = append([]Row(nil), v1...)
	for i := range v2 {
		changed := true
		switch r.IntN(8) {
		case 0:
			v2[i].Body += " edited"
		case 1:
			v2[i].Project += "-moved"
		case 2:
			v2[i].Deleted = true
		default:
			changed = false
		}
		if changed {
			v2[i].UpdatedAt = later.Add(time.Duration(i) * time.Millisecond)
		}
	}
	for _, row := range v2 {
		if r.IntN(6) != 0 {
			row.Deleted = false
			v3 = append(v3, row)
		}
	}
	return v1, v2, v3
}

// crashTest runs the test as the indexer child when the environment says so
// (and reports true), skips it in -short mode, and otherwise returns a logged
// random seed's generator and the three source versions.
func crashTest(t *testing.T) (child bool, r *rand.Rand, v1, v2, v3 []Row) {
	if spec := os.Getenv(crashChildEnv); spec != "" {
		crashChild(spec)
		return true, nil, nil, nil, nil
	}
	if testing.Short() {
		t.Skip("spawns indexer processes")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r = rand.New(rand.NewPCG(seed, 1))
	v1, v2, v3 = crashVersions(r, seed, time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC))
	return false, r, v1, v2, v3
}

// jsonlPhases are the three versions written to a JSONL source.
func jsonlPhases(t *testing.T, file string, v1, v2, v3 []Row) []crashPhase {
	return []crashPhase{
		{"first index", func() { writeJSONL(t, file, v1) }, expected(v1), false},
		{"edits, moves, deletes", func() { writeJSONL(t, file, v2) }, expected(v2), false},
		{"full sync", func() { writeJSONL(t, file, v3) }, expected(v3), true},
	}
}

// TestKillAndResume kills the indexer process of a JSONL source at random
// moments, restarts it, and checks at the end of each phase (first index;
// edits, moves, deletes; full sync) that the store holds exactly the source:
// the same tickets with the same content and chunk counts, nothing extra.
func TestKillAndResume(t *testing.T) {
	child, r, v1, v2, v3 := crashTest(t)
	if child {
		return
	}
	dir := t.TempDir()
	spec := crashSpec{DataDir: dir, JSONL: filepath.Join(dir, "tickets.jsonl")}
	killAndResume(t, spec, r, jsonlPhases(t, spec.JSONL, v1, v2, v3))
}

// TestKillAndResumePG does the same with a PostgreSQL source table and the
// sync state in PostgreSQL: the keyset watermark must survive kills too.
func TestKillAndResumePG(t *testing.T) {
	child, r, v1, v2, v3 := crashTest(t)
	if child {
		return
	}
	url := testenv.DatabaseURL(t)
	pool := newPool(t, url)
	if _, err := pool.Exec(context.Background(), "CREATE SCHEMA app; "+pgSchema); err != nil {
		t.Fatal(err)
	}
	spec := crashSpec{DataDir: t.TempDir(), PGURL: url}
	killAndResume(t, spec, r, []crashPhase{
		{"first index", func() { pgInsert(t, pool, v1) }, expected(pgRows(v1)), false},
		{"edits, moves, deletes", func() { pgInsert(t, pool, v2) }, expected(pgRows(v2)), false},
		{"full sync", func() {
			keep := map[string]bool{}
			for _, row := range v3 {
				keep[row.ID] = true
			}
			pgInsert(t, pool, v3) // undeletes the rows v3 keeps
			for _, row := range v2 {
				if !keep[row.ID] {
					var id int64
					fmt.Sscanf(row.ID, "T-%d", &id)
					if _, err := pool.Exec(context.Background(), `DELETE FROM app.issues WHERE ticket_id = $1`, id); err != nil {
						t.Fatal(err)
					}
				}
			}
		}, expected(pgRows(v3)), true},
	})
}

// TestKillAndResumePGVector kills the indexer of a JSONL source writing to a
// pgvector store (one transaction per ticket), sync state in the same database.
func TestKillAndResumePGVector(t *testing.T) {
	child, r, v1, v2, v3 := crashTest(t)
	if child {
		return
	}
	url := testenv.DatabaseURL(t)
	dir := t.TempDir()
	spec := crashSpec{DataDir: dir, JSONL: filepath.Join(dir, "tickets.jsonl"), PGVectorURL: url}
	killAndResume(t, spec, r, jsonlPhases(t, spec.JSONL, v1, v2, v3))
}
