package embedded

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

const crashDim = 8

var crashMeta = retrieval.IndexMeta{Model: "crash", Dim: crashDim}

// fingerprint describes everything a reader can see in a store, canonically.
func fingerprint(t *testing.T, s *Store) string {
	t.Helper()
	ctx := t.Context()
	var ids []string
	for ref, err := range s.Tickets(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ref.ID)
	}
	slices.Sort(ids)
	q := make([]float32, crashDim)
	q[0] = 1
	var b strings.Builder
	for _, id := range ids {
		tk, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s %s %q|", tk.ID, tk.Tenant, tk.Project, tk.Title)
		res, err := s.Search(ctx, retrieval.SearchRequest{Vector: q, Filter: retrieval.Filter{Tenant: tk.Tenant, Tickets: []string{id}}, K: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range res.Hits {
			fmt.Fprintf(&b, "%d:%s:%s:%.6f ", h.Ordinal, h.Project, h.Text, h.Score)
		}
		// The lexical arm, rebuilt from the same records, shows the same chunks.
		lex, err := s.SearchLexical(ctx, retrieval.LexicalRequest{Terms: lexical.Terms(id + " " + tk.Title), Filter: retrieval.Filter{Tenant: tk.Tenant, Tickets: []string{id}}, K: 1000})
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("| lexical ")
		for _, h := range lex.Hits {
			fmt.Fprintf(&b, "%d:%s:%s:%.6f ", h.Ordinal, h.Project, h.Text, h.Score)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func chunksOf(rng *rand.Rand, n int, text string) []retrieval.Chunk {
	cs := make([]retrieval.Chunk, n)
	for i := range cs {
		cs[i] = retrieval.Chunk{Ordinal: i, Text: fmt.Sprintf("%s/%d", text, i), Vector: randUnit(rng, crashDim)}
	}
	return cs
}

// TestTornLogTail writes one more record after a known state, then cuts the log
// at every byte offset inside that record (and appends garbage after it): each
// reopen must show the old state exactly, or (only for the whole record) the new
// one, and the store must keep working after the cut.
func TestTornLogTail(t *testing.T) {
	ops := map[string]func(*Store) error{
		"upsert-shrink": func(s *Store) error {
			return s.Upsert(t.Context(), retrieval.Ticket{ID: "X", Tenant: "acme", Project: "p2", Title: "v2"},
				chunksOf(rand.New(rand.NewPCG(3, 3)), 2, "v2"))
		},
		"upsert-grow": func(s *Store) error {
			return s.Upsert(t.Context(), retrieval.Ticket{ID: "X", Tenant: "acme", Project: "p1", Title: "v2"},
				chunksOf(rand.New(rand.NewPCG(4, 4)), 6, "v2"))
		},
		"delete": func(s *Store) error { return s.Delete(t.Context(), "X") },
		"move":   func(s *Store) error { return s.Move(t.Context(), "X", "p9") },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{DataDir: dir, Meta: crashMeta}
			s, err := Open(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 1))
			for i := range 5 {
				id := fmt.Sprintf("T%d", i)
				if err := s.Upsert(t.Context(), retrieval.Ticket{ID: id, Tenant: "acme", Project: "p1", Title: id}, chunksOf(rng, 1+i%3, id)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Upsert(t.Context(), retrieval.Ticket{ID: "X", Tenant: "acme", Project: "p1", Title: "v1"}, chunksOf(rng, 4, "v1")); err != nil {
				t.Fatal(err)
			}
			oldState := fingerprint(t, s)
			walPath := filepath.Join(dir, fileName("wal", s.disk.seq))
			before := s.disk.walBytes
			if err := op(s); err != nil {
				t.Fatal(err)
			}
			newState := fingerprint(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if oldState == newState {
				t.Fatal("the operation changed nothing visible")
			}
			full, err := os.ReadFile(walPath)
			if err != nil {
				t.Fatal(err)
			}
			meta, err := os.ReadFile(filepath.Join(dir, metaFile))
			if err != nil {
				t.Fatal(err)
			}
			check := func(wal []byte, want, label string, thenWrite bool) {
				t.Helper()
				d := t.TempDir()
				os.WriteFile(filepath.Join(d, metaFile), meta, 0o640)
				os.WriteFile(filepath.Join(d, filepath.Base(walPath)), wal, 0o640)
				s, err := Open(t.Context(), Config{DataDir: d, Meta: crashMeta})
				if err != nil {
					t.Fatalf("%s: reopen: %v", label, err)
				}
				defer s.Close()
				if got := fingerprint(t, s); got != want {
					t.Fatalf("%s: reopened state\n%s\nwant\n%s", label, got, want)
				}
				if !thenWrite {
					return
				}
				// Writes after a cut land on a clean tail and survive a reopen.
				if err := s.Upsert(t.Context(), retrieval.Ticket{ID: "after", Tenant: "acme", Project: "p1"}, chunksOf(rng, 1, "after")); err != nil {
					t.Fatal(err)
				}
				want2 := fingerprint(t, s)
				s.Close()
				s2, err := Open(t.Context(), Config{DataDir: d, Meta: crashMeta})
				if err != nil {
					t.Fatalf("%s: second reopen: %v", label, err)
				}
				defer s2.Close()
				if got := fingerprint(t, s2); got != want2 {
					t.Fatalf("%s: write after the cut was lost:\n%s\nwant\n%s", label, got, want2)
				}
			}
			for off := before; off < int64(len(full)); off++ {
				check(full[:off], oldState, fmt.Sprintf("cut at %d of %d", off, len(full)), off == before+1 || off == int64(len(full))-1)
			}
			check(full, newState, "whole log", false)
			garbage := append(slices.Clone(full), 0x55, 0, 0, 0, 1, 2, 3, 4, 9, 9)
			check(garbage, newState, "garbage after the last record", true)
			flipped := slices.Clone(full)
			flipped[len(flipped)-3] ^= 0x40
			check(flipped, oldState, "flipped bit in the last record", false)
		})
	}
}

// TestKillDashNine runs a writer in a child process, kills it with SIGKILL at a
// random moment, reopens the store and checks that every ticket is whole and no
// acknowledged write was lost. The writer compacts often, so kills also land
// inside snapshot writes.
func TestKillDashNine(t *testing.T) {
	if os.Getenv("EMBEDDED_CRASH_DIR") != "" {
		t.Skip("child process")
	}
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), "EMBEDDED_CRASH_DIR="+dir, fmt.Sprintf("EMBEDDED_CRASH_ROUND=%d", round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]int{}
		writes := 0
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		deadline := time.After(time.Duration(30+rng.IntN(250)) * time.Millisecond)
		started := false
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				var id string
				var g int
				if _, err := fmt.Sscanf(l, "ack %s %d", &id, &g); err == nil {
					acked[id] = g
					writes++
					started = true
				}
			case <-deadline:
				if !started { // wait for the first ack so each round writes something
					deadline = time.After(10 * time.Millisecond)
					continue
				}
				cmd.Process.Signal(syscall.SIGKILL)
				break read
			}
		}
		go io.Copy(io.Discard, out)
		for range lines {
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: writer ended on its own: %v", round, err)
		}
		t.Logf("round %d: killed after %d acknowledged writes", round, writes)
		verifyCrashState(t, dir, acked, round)
	}
}

func genOf(text string) int {
	g, err := strconv.Atoi(strings.TrimPrefix(strings.SplitN(text, "/", 2)[0], "gen="))
	if err != nil {
		return -1
	}
	return g
}

func verifyCrashState(t *testing.T, dir string, acked map[string]int, round int) {
	t.Helper()
	s, err := Open(t.Context(), Config{DataDir: dir, Meta: crashMeta})
	if err != nil {
		t.Fatalf("round %d: reopen after kill: %v", round, err)
	}
	defer s.Close()
	t.Logf("round %d: %d tickets acknowledged, store at snapshot %d with %d chunks", round, len(acked), s.disk.seq, s.ix.chunks)
	q := make([]float32, crashDim)
	q[0] = 1
	for id, ack := range acked {
		tk, err := s.Get(t.Context(), id)
		if err != nil {
			if id == "gone" {
				continue
			}
			t.Fatalf("round %d: acknowledged ticket %s lost: %v", round, id, err)
		}
		g := genOf(tk.Title)
		if g < ack && id != "gone" {
			t.Fatalf("round %d: %s at generation %d, but %d was acknowledged", round, id, g, ack)
		}
		res, err := s.Search(t.Context(), retrieval.SearchRequest{Vector: q, Filter: retrieval.Filter{Tenant: "acme", AllProjects: true, Tickets: []string{id}}, K: 1000})
		if err != nil {
			t.Fatal(err)
		}
		hits := res.Hits
		n := 0
		for _, h := range hits {
			if h.TicketID != id {
				continue
			}
			n++
			if genOf(h.Text) != g || h.Project != tk.Project {
				t.Fatalf("round %d: %s is generation %d in project %s, but chunk %q in project %s", round, id, g, tk.Project, h.Text, h.Project)
			}
		}
		if n != 1+g%5 {
			t.Fatalf("round %d: %s generation %d has %d of its %d chunks", round, id, g, n, 1+g%5)
		}
		// The lexical arm holds the same generation in the same project: its
		// own title finds every chunk, in the tenant-wide scope and under the
		// ticket's project.
		for _, flt := range []retrieval.Filter{{Tenant: "acme", AllProjects: true}, {Tenant: "acme", Projects: []string{tk.Project}}} {
			lex, err := s.SearchLexical(t.Context(), retrieval.LexicalRequest{Terms: []string{strconv.Itoa(g)}, Filter: flt, K: 1000})
			if err != nil {
				t.Fatal(err)
			}
			n = 0
			for _, h := range lex.Hits {
				if h.TicketID != id {
					continue
				}
				n++
				if genOf(h.Text) != g || h.Project != tk.Project {
					t.Fatalf("round %d: lexical arm has %s chunk %q in project %s, the ticket is generation %d in %s", round, id, h.Text, h.Project, g, tk.Project)
				}
			}
			if n != 1+g%5 {
				t.Fatalf("round %d: lexical arm has %d of %s's %d chunks (generation %d)", round, n, id, 1+g%5, g)
			}
		}
	}
}

// TestCrashWriter is the child of TestKillDashNine: it writes until killed and
// reports each acknowledged write on stdout.
func TestCrashWriter(t *testing.T) {
	dir := os.Getenv("EMBEDDED_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestKillDashNine")
	}
	round, _ := strconv.Atoi(os.Getenv("EMBEDDED_CRASH_ROUND"))
	s, err := Open(t.Context(), Config{DataDir: dir, Meta: crashMeta, CompactBytes: 16 << 10, NoSync: round%2 == 1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "writer open:", err)
		os.Exit(3)
	}
	rng := rand.New(rand.NewPCG(uint64(round), 77))
	for g := (round + 1) * 1_000_000; ; g++ {
		id := fmt.Sprintf("hot-%d", g%4)
		var err error
		switch g % 9 {
		case 4:
			if err = s.Move(t.Context(), id, fmt.Sprintf("moved-%d", g%3)); errors.Is(err, retrieval.ErrNotFound) {
				err = nil // not written yet in the first round
			}
		case 7:
			err = s.Delete(t.Context(), "gone")
		case 8:
			err = s.Upsert(t.Context(), retrieval.Ticket{ID: "gone", Tenant: "acme", Project: "p", Title: fmt.Sprintf("gen=%d", g)},
				chunksOf(rng, 1+g%5, fmt.Sprintf("gen=%d", g)))
		default:
			err = s.Upsert(t.Context(), retrieval.Ticket{ID: id, Tenant: "acme", Project: fmt.Sprintf("p%d", g%3), Title: fmt.Sprintf("gen=%d", g)},
				chunksOf(rng, 1+g%5, fmt.Sprintf("gen=%d", g)))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			os.Exit(3)
		}
		if g%9 != 4 && g%9 != 7 {
			if g%9 == 8 {
				id = "gone"
			}
			fmt.Printf("ack %s %d\n", id, g)
		}
	}
}
