package indexer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/embedded"
)

// crashChildEnv makes the test binary act as the indexer process of
// TestKillAndResume: "<data dir>|<source>|<full>".
const crashChildEnv = "CLEARANCE_INDEXER_CRASH_CHILD"

func crashChild(spec string) {
	var dataDir, source, full string
	parts := splitN(spec, '|', 3)
	dataDir, source, full = parts[0], parts[1], parts[2]
	ctx := context.Background()
	emb := newEmbedder()
	s, err := embedded.Open(ctx, embedded.Config{
		DataDir: filepath.Join(dataDir, "index"), Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()},
		// Small, so compactions happen (and get killed) during the test.
		CompactBytes: 256 << 10,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open store:", err)
		os.Exit(3)
	}
	st, err := NewFileState(dataDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	src, err := NewJSONL(JSONLConfig{Path: source, BatchSize: 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	ix, err := New(Config{
		Store: s, Embedder: emb, State: st, Chunker: Chunker{Words: 20, Overlap: 5}, Workers: 2, EmbedBatch: 16, Full: full == "true",
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
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func splitN(s string, sep byte, n int) []string {
	out := make([]string, 0, n)
	for len(out) < n-1 {
		i := 0
		for i < len(s) && s[i] != sep {
			i++
		}
		out = append(out, s[:i])
		s = s[min(i+1, len(s)):]
	}
	return append(out, s)
}

// TestKillAndResume kills the indexer process (kill -9) at random moments,
// restarts it, and checks at the end that the store holds exactly the source:
// the same tickets with the same content and chunk counts, nothing extra.
// Three phases cover first indexing, incremental edits/moves/deletes and a full
// sync that deletes missing rows.
func TestKillAndResume(t *testing.T) {
	if spec := os.Getenv(crashChildEnv); spec != "" {
		crashChild(spec)
		return
	}
	if testing.Short() {
		t.Skip("spawns indexer processes")
	}
	dir := t.TempDir()
	source := filepath.Join(dir, "tickets.jsonl")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	c := Chunker{Words: 20, Overlap: 5}

	v1 := genTickets(seed, 1500, 150)
	v2 := append([]Row(nil), v1...)
	for i := range v2 {
		switch r.IntN(8) {
		case 0:
			v2[i].Body += " edited"
		case 1:
			v2[i].Project += "-moved"
		case 2:
			v2[i].Deleted = true
		}
	}
	v3 := []Row{}
	for _, row := range v2 {
		if r.IntN(6) != 0 {
			row.Deleted = false
			v3 = append(v3, row)
		}
	}

	// run starts the indexer and, if killAt > 0, kills it with SIGKILL after
	// killAt committed batches plus a random delay of up to 2 ms (so the kill
	// lands anywhere: between batches, mid-embedding, mid-write, mid-compaction).
	run := func(full bool, killAt int) (finished bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillAndResume$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir+"|"+source+"|"+strconv.FormatBool(full))
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
	phases := []struct {
		name string
		rows []Row
		full bool
	}{{"first index", v1, false}, {"edits, moves, deletes", v2, false}, {"full sync", v3, true}}
	for _, ph := range phases {
		writeJSONL(t, filepath.Join(dir, "tickets.jsonl"), ph.rows)
		kills := 0
		// Kill runs until one finishes on its own (at most 30 kills), then
		// run to completion.
		// A full sync starts over each time, so its kills range over the whole
		// run (75 batches, then the deletes); a resumed run's over its start.
		span := 20
		if ph.full {
			span = 80
		}
		for kills < 30 && !run(ph.full, 1+r.IntN(span)) {
			kills++
		}
		run(ph.full, 0)
		t.Logf("%s: %d runs killed before one finished", ph.name, kills)
		s := openStore(t, filepath.Join(dir, "index"), newEmbedder())
		want := expected(ph.rows)
		checkStore(t, s, want, c)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}
