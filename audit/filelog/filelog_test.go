package filelog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/audittest"
)

// fileStorage is one log directory for the conformance suite; tampering rewrites
// the segment files the way someone with access to the disk would.
type fileStorage struct{ dir string }

func (s *fileStorage) Open(t *testing.T, o audittest.Options) audittest.Backend {
	t.Helper()
	cfg := Config{Dir: s.dir, HashQueries: o.HashQueries, FailOpen: o.FailOpen}
	if o.SmallSegments {
		cfg.MaxSegmentBytes = 1
	}
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

type entry struct {
	seg  string
	line string
}

// entries reads every record line in chain order, from the checkpoint on.
func (s *fileStorage) entries(t *testing.T) ([]entry, int) {
	t.Helper()
	l := &Log{cfg: Config{Dir: s.dir}}
	segs, err := l.listSegments()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := l.readCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	offset := 0
	if cp != nil {
		offset = int(cp.Records)
	}
	var out []entry
	for _, sg := range segs {
		data, err := os.ReadFile(sg.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range lines(data) {
			if id, _ := lineID(line); cp != nil && id <= cp.ID {
				continue
			}
			out = append(out, entry{sg.path, string(line)})
		}
	}
	return out, offset
}

func (s *fileStorage) write(t *testing.T, es []entry, segs []string) {
	t.Helper()
	files := map[string]*bytes.Buffer{}
	for _, p := range segs {
		files[p] = &bytes.Buffer{}
	}
	for _, e := range es {
		files[e.seg].WriteString(e.line + "\n")
	}
	for p, b := range files {
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func (s *fileStorage) tamper(t *testing.T, fn func(es []entry, off int) []entry) {
	t.Helper()
	es, off := s.entries(t)
	var segs []string
	for _, e := range es {
		segs = append(segs, e.seg)
	}
	s.write(t, fn(es, off), segs)
}

func (s *fileStorage) Edit(t *testing.T, pos int, edit func(string) string) {
	s.tamper(t, func(es []entry, off int) []entry {
		es[pos-off].line = edit(es[pos-off].line)
		return es
	})
}

func (s *fileStorage) Delete(t *testing.T, pos int) {
	s.tamper(t, func(es []entry, off int) []entry {
		return append(es[:pos-off:pos-off], es[pos-off+1:]...)
	})
}

func (s *fileStorage) Swap(t *testing.T, i, j int) {
	s.tamper(t, func(es []entry, off int) []entry {
		es[i-off].line, es[j-off].line = es[j-off].line, es[i-off].line
		return es
	})
}

func (s *fileStorage) EditCheckpoint(t *testing.T, edit func(*audit.Checkpoint)) {
	l := &Log{cfg: Config{Dir: s.dir}}
	cp, err := l.readCheckpoint()
	if err != nil || cp == nil {
		t.Fatalf("no checkpoint to edit: %v", err)
	}
	edit(cp)
	b, _ := json.Marshal(cp)
	if err := os.WriteFile(l.checkpointPath(), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *fileStorage) Break(t *testing.T, b audittest.Backend) {
	l := b.(*Log)
	l.mu.Lock()
	l.f.Close() // every later write fails, and so does undoing it
	l.mu.Unlock()
}

func TestConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audittest.Storage { return &fileStorage{dir: t.TempDir()} })
}

func newRecordingLogger() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

// TestTornTail cuts the last record at many offsets (a crash in the middle of the
// write): a read-only Verify reports a torn tail and an intact chain; opening for
// writing cuts it off, logs it, and the log takes and verifies new records.
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	l, err := Open(context.Background(), Config{Dir: src})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*audit.Record
	for i := range 4 {
		r := audittest.Rec("acme", "anne", "copilot", fmt.Sprintf("T-%d", i), "T-9")
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	l.Close()
	seg := filepath.Join(src, "segments", "000001.log")
	full, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	full = bytes.TrimRight(full, "\x00") // preallocated space
	lastStart := bytes.LastIndexByte(full[:len(full)-1], '\n') + 1
	for cut := lastStart + 1; cut < len(full); cut += 1 + (len(full)-lastStart)/40 {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "segments"), 0o700)
		torn := full[:cut]
		if cut%2 == 0 { // a crash inside preallocated space leaves zeros behind
			torn = append(slices.Clone(torn), make([]byte, 4096)...)
		}
		if err := os.WriteFile(filepath.Join(dir, "segments", "000001.log"), torn, 0o600); err != nil {
			t.Fatal(err)
		}
		ro, err := Open(context.Background(), Config{Dir: dir, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := ro.Verify(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Records != 3 || rep.TornTail == nil || rep.TornTail.Offset != int64(lastStart) || rep.TornTail.Bytes != int64(cut-lastStart) {
			t.Fatalf("cut at %d: report %+v (torn %+v), want 3 intact records and a torn tail at %d", cut, rep, rep.TornTail, lastStart)
		}
		logger, logs := newRecordingLogger()
		w, err := Open(context.Background(), Config{Dir: dir, Logger: logger})
		if err != nil {
			t.Fatalf("cut at %d: open: %v", cut, err)
		}
		if !strings.Contains(logs.String(), "torn tail") {
			t.Fatalf("cut at %d: recovery did not log the torn tail: %s", cut, logs)
		}
		r := audittest.Rec("acme", "anne", "", "T-new")
		if err := w.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if r.PrevHash != recs[2].Hash {
			t.Fatalf("cut at %d: new record links to %s, want the last whole record %s", cut, r.PrevHash, recs[2].Hash)
		}
		rep, err = w.Verify(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() || rep.Records != 4 || rep.TornTail != nil {
			t.Fatalf("cut at %d: after recovery %+v, want 4 intact records", cut, rep)
		}
		w.Close()
	}
}

// TestTornMiddleIsCorruption: a broken line followed by whole ones is not a crash
// artifact; Verify reports it.
func TestTornMiddleIsCorruption(t *testing.T) {
	dir := t.TempDir()
	s := &fileStorage{dir: dir}
	b := s.Open(t, audittest.Options{})
	for i := range 3 {
		if err := b.Append(context.Background(), audittest.Rec("acme", "u", "", fmt.Sprintf("T-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	s.Edit(t, 1, func(raw string) string { return raw[:len(raw)/2] })
	l, err := Open(context.Background(), Config{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Problem == nil || rep.Problem.Kind != audit.Corrupt || rep.Problem.Position != 1 {
		t.Fatalf("report %+v, want corrupt at position 1", rep.Problem)
	}
}

// TestRotation: segments roll over by size, and the chain spans them.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(context.Background(), Config{Dir: dir, MaxSegmentBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 20 {
		if err := l.Append(context.Background(), audittest.Rec("acme", "u", "", fmt.Sprintf("T-%d", i), "T-x")); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "segments"))
	if len(ents) < 3 {
		t.Fatalf("%d segments, want rotation by size", len(ents))
	}
	rep, err := l.Verify(context.Background())
	if err != nil || !rep.OK() || rep.Records != 20 {
		t.Fatalf("verify %+v %v", rep, err)
	}
	// A whole segment removed from the middle breaks the chain.
	l.Close()
	os.Remove(filepath.Join(dir, "segments", "000002.log"))
	ro, _ := Open(context.Background(), Config{Dir: dir, ReadOnly: true})
	rep, _ = ro.Verify(context.Background())
	if rep.Problem == nil || rep.Problem.Kind != audit.Removed {
		t.Fatalf("segment removed: %+v, want removed", rep.Problem)
	}
}

// TestSecondWriterRefused: the lock keeps two processes off one chain.
func TestSecondWriterRefused(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(context.Background(), Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// flock is per open file description, so a second Open in this process is
	// refused just like another process would be.
	if _, err := Open(context.Background(), Config{Dir: dir}); err == nil {
		t.Fatal("second writer opened the same dir")
	}
}

// TestKillDashNine runs an appender in a child process, SIGKILLs it mid-stream,
// and checks that the log verifies and holds every acknowledged record.
func TestKillDashNine(t *testing.T) {
	if os.Getenv("AUDIT_CRASH_DIR") != "" {
		t.Skip("child process")
	}
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashAppender$", "-test.count=1")
		cmd.Env = append(os.Environ(), "AUDIT_CRASH_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var acked []string
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
				acked = append(acked, id)
				if len(acked) == 200+round*150 {
					cmd.Process.Signal(syscall.SIGKILL)
					break
				}
			}
		}
		go io.Copy(io.Discard, out)
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: appender ended on its own", round)
		}
		l, err := Open(context.Background(), Config{Dir: dir})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		rep, err := l.Verify(context.Background())
		if err != nil || !rep.OK() || rep.TornTail != nil {
			t.Fatalf("round %d: verify after kill: %+v %v", round, rep, err)
		}
		for _, id := range acked {
			if _, err := l.Get(context.Background(), id); err != nil {
				t.Fatalf("round %d: acknowledged record %s lost: %v", round, id, err)
			}
		}
		t.Logf("round %d: %d acknowledged, %d in the chain", round, len(acked), rep.Records)
		l.Close()
	}
}

// TestCrashAppender is the child of TestKillDashNine.
func TestCrashAppender(t *testing.T) {
	dir := os.Getenv("AUDIT_CRASH_DIR")
	if dir == "" {
		t.Skip("run by TestKillDashNine")
	}
	l, err := Open(context.Background(), Config{Dir: dir, MaxSegmentBytes: 64 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, "appender open:", err)
		os.Exit(3)
	}
	// Several goroutines so batches of many records are in flight when killed.
	ids := make(chan string, 64)
	for w := range 8 {
		go func() {
			for i := 0; ; i++ {
				r := audittest.Rec("acme", fmt.Sprintf("w%d", w), "", fmt.Sprintf("T-%d", i))
				if err := l.Append(context.Background(), r); err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				ids <- r.ID
			}
		}()
	}
	for id := range ids {
		fmt.Println("ack", id)
	}
	time.Sleep(time.Hour)
}
