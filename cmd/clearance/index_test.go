package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/authz"
	authzembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/fgafile"
	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/testdata"
)

// runCLI runs the clearance command line in process.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestIndexCommand(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tickets.jsonl")
	demo, err := os.ReadFile("../../testdata/tickets.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(demo), "\n")
	bad := `{"id":"X-1","tenant":"acme","project":"acme web","title":"t","body":"b"}` + "\n"
	if err := os.WriteFile(src, append(demo, bad...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "index", "--data-dir", dir, "--source", src, "--embedding-dim", "64")
	var exit exitError
	if !errors.As(err, &exit) || exit.code != exitRowsFailed {
		t.Fatalf("a run with a bad row: %v\n%s", err, out)
	}
	if !strings.Contains(out, "failed 1") || !strings.Contains(out, "tickets.jsonl:"+strconv.Itoa(lines+1)+" (id X-1): project:") {
		t.Fatalf("summary does not report the bad row:\n%s", out)
	}
	// Fix the row: only it is embedded, everything else was already indexed
	// (the file changed, so it is read again and skipped by hash).
	if err := os.WriteFile(src, append(demo, strings.Replace(bad, "acme web", "acme-web", 1)...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "index", "--data-dir", dir, "--source", src, "--embedding-dim", "64")
	if err != nil || !strings.Contains(out, "embedded 1, unchanged "+strconv.Itoa(lines)) {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	// Opening the index with another dimension is refused.
	if out, err := runCLI(t, "index", "--data-dir", dir, "--source", src, "--embedding-dim", "32"); err == nil {
		t.Fatalf("index opened with another dimension:\n%s", out)
	}
}

func TestReconcileCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if out, err := runCLI(t, "index", "--data-dir", dir, "--source", "../../testdata/tickets.jsonl", "--embedding-dim", "64"); err != nil {
		t.Fatalf("index: %v\n%s", err, out)
	}
	// The demo org's tuples in the embedded engine of the data dir, with one
	// ticket moved to another project of its tenant.
	e, err := authzembedded.New(ctx, authzembedded.Config{Datastore: authzembedded.SQLite, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	org, err := fgafile.Parse(testdata.OrgFGA)
	if err != nil {
		t.Fatal(err)
	}
	if err := org.WriteTuples(ctx, e, 0); err != nil {
		t.Fatal(err)
	}
	var moved, from, to string
	for tp, err := range e.Read(ctx, authz.TupleFilter{Object: "project:", Relation: "tenant", User: "tenant:acme"}) {
		if err != nil {
			t.Fatal(err)
		}
		if from == "" {
			from = strings.TrimPrefix(tp.Object, "project:")
		} else if to == "" {
			to = strings.TrimPrefix(tp.Object, "project:")
		}
	}
	for tp, err := range e.Read(ctx, authz.TupleFilter{Object: "ticket:", Relation: "project", User: "project:" + from}) {
		if err != nil {
			t.Fatal(err)
		}
		moved = strings.TrimPrefix(tp.Object, "ticket:")
		break
	}
	if moved == "" || to == "" {
		t.Fatalf("demo org has no ticket in %q or no second project", from)
	}
	err = e.Write(ctx,
		[]authz.Tuple{{User: "project:" + to, Relation: "project", Object: "ticket:" + moved}},
		[]authz.Tuple{{User: "project:" + from, Relation: "project", Object: "ticket:" + moved}})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()

	out, err := runCLI(t, "reconcile", "--data-dir", dir, "--embedding-dim", "64")
	var exit exitError
	if !errors.As(err, &exit) || exit.code != exitDrift || !strings.Contains(out, "ticket "+moved+": other_project") || !strings.Contains(out, "1 drifted, 0 fixed") {
		t.Fatalf("reconcile: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "reconcile", "--data-dir", dir, "--embedding-dim", "64", "--fix"); err != nil || !strings.Contains(out, "1 drifted, 1 fixed") {
		t.Fatalf("reconcile --fix: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "reconcile", "--data-dir", dir, "--embedding-dim", "64"); err != nil || !strings.Contains(out, "0 drifted") {
		t.Fatalf("reconcile after the fix: %v\n%s", err, out)
	}
}

func TestIndexCommandPGVector(t *testing.T) {
	url := testenv.DatabaseURL(t)
	args := []string{"index", "--store", "pgvector", "--database-url", url, "--data-dir", t.TempDir(), "--source", "../../testdata/tickets.jsonl", "--embedding-dim", "64"}
	out, err := runCLI(t, args...)
	if err != nil || !strings.Contains(out, "failed 0") || strings.Contains(out, "embedded 0,") {
		t.Fatalf("index into pgvector: %v\n%s", err, out)
	}
	// The store was empty: the run loaded it in bulk, and with no tenant above
	// the exact-search threshold left the HNSW index unbuilt.
	if !strings.Contains(out, "bulk load: search index dropped") || !strings.Contains(out, "search index deferred") {
		t.Errorf("first run into an empty store was not a bulk load:\n%s", out)
	}
	// The watermark lives in the database: the second run reads nothing.
	out, err = runCLI(t, args...)
	if err != nil || !strings.Contains(out, "seen 0,") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if strings.Contains(out, "bulk load") {
		t.Errorf("second run into a loaded store was a bulk load:\n%s", out)
	}
	// --bulk is for one local pgvector run.
	for _, c := range []struct {
		args []string
		want string
	}{
		{append(slices.Clone(args), "--bulk", "--every", "1h"), "--bulk is for one run"},
		{[]string{"index", "--data-dir", t.TempDir(), "--source", "../../testdata/tickets.jsonl", "--embedding-dim", "64", "--bulk"}, "--bulk applies to --store pgvector"},
		{[]string{"index", "--server", "http://127.0.0.1:1", "--token", "x", "--source", "../../testdata/tickets.jsonl", "--bulk"}, "--bulk applies to a local --store pgvector"},
	} {
		if out, err := runCLI(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q\n%s", c.args, err, c.want, out)
		}
	}
}

// A scheduled index runs at once, keeps running, and stops cleanly when its
// context ends (SIGINT/SIGTERM in main).
func TestIndexCommandSchedule(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := newRootCommand()
	out := &syncBuffer{}
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs([]string{"index", "--data-dir", t.TempDir(), "--source", "../../testdata/tickets.jsonl", "--embedding-dim", "64", "--schedule", "@every 1h"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "indexed jsonl:") {
		if time.Now().After(deadline) {
			t.Fatalf("no run within 30s:\n%s", out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("the scheduled command ended: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !strings.Contains(out.String(), "index schedule started") || !strings.Contains(out.String(), "failed 0") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// TestIndexCommandMap: an export with its own member names is indexed with
// --map (the demo tickets renamed, plus a member the map drops); a bad line
// is reported with its file line in the export's names, and a member neither
// mapped nor dropped is still an unknown field.
func TestIndexCommandMap(t *testing.T) {
	dir := t.TempDir()
	demo, err := os.ReadFile("../../testdata/tickets.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	rename := strings.NewReplacer(`"id":`, `"ticket_id":`, `"project":`, `"proj":`, `"title":`, `"summary":`, `"tenant":`, `"org":`)
	var b strings.Builder
	n := 0
	for line := range strings.Lines(string(demo)) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		n++
		b.WriteString(strings.Replace(rename.Replace(line), "{", `{"priority":"p2",`, 1))
	}
	b.WriteString(`{"ticket_id":"X-1","org":"acme","proj":"acme-web","summary":42,"priority":"p1"}` + "\n")
	b.WriteString(`{"ticket_id":"X-2","org":"acme","proj":"acme-web","summary":"ok","assignee":"anne"}` + "\n")
	src := filepath.Join(dir, "export.jsonl")
	if err := os.WriteFile(src, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"index", "--data-dir", dir, "--source", src, "--embedding-dim", "64",
		"--map", "id=ticket_id,tenant=org,project=proj,title=summary,-=priority"}
	out, err := runCLI(t, args...)
	var exit exitError
	if !errors.As(err, &exit) || exit.code != exitRowsFailed {
		t.Fatalf("run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"embedded " + strconv.Itoa(n) + ",",
		"failed 2",
		"export.jsonl:" + strconv.Itoa(n+1) + ": summary (title): must be a JSON string",
		"export.jsonl:" + strconv.Itoa(n+2) + ": assignee: unknown field",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if out, err := runCLI(t, "index", "--data-dir", dir, "--pg-url", "postgres://x/y", "--pg-table", "t", "--map", "id=x"); err == nil || !strings.Contains(err.Error(), "--map applies to --source") {
		t.Errorf("--map with --pg-url: %v\n%s", err, out)
	}
}

// --batch is bounded: a batch is held in memory.
func TestIndexCommandBatchBound(t *testing.T) {
	dir := t.TempDir()
	for _, b := range []string{"0", "100001"} {
		out, err := runCLI(t, "index", "--data-dir", dir, "--source", "../../testdata/tickets.jsonl", "--batch", b)
		if err == nil || !strings.Contains(err.Error(), "--batch must be between 1 and 100000") {
			t.Errorf("--batch %s: %v\n%s", b, err, out)
		}
	}
}
