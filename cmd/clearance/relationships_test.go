package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clearance-dev/clearance/client"
)

// TestRelationshipsDataDir: a bad tuple anywhere in a file writes nothing and
// is reported with its line; a good file of more than one batch is written to
// the engine in the data dir and read back (JSONL and CSV), and delete takes
// read's output back.
func TestRelationshipsDataDir(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var good strings.Builder
	const n = 2345
	for i := range n {
		fmt.Fprintf(&good, `{"user":"user:u%d","relation":"viewer","object":"project:p1"}`+"\n", i)
	}
	// Line n+1 is bad: the model has no project#reader.
	bad := good.String() + `{"user":"user:x","relation":"reader","object":"project:p1"}` + "\n"
	badFile := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(badFile, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := run(t, "", "relationships", "write", "--data-dir", data, badFile)
	if err == nil || !strings.Contains(err.Error(), "1 invalid tuple(s); nothing was written") {
		t.Fatalf("bad file: err %v", err)
	}
	if want := fmt.Sprintf("bad.jsonl:%d:", n+1); !strings.Contains(stderr, want) || !strings.Contains(stderr, "reader") {
		t.Fatalf("bad tuple not reported at %s:\n%s", want, stderr)
	}
	out, stderr, err := run(t, "", "relationships", "read", "--data-dir", data, "--object", "project:p1")
	if err != nil {
		t.Fatalf("read: %v\n%s", err, stderr)
	}
	if out != "" {
		t.Fatalf("the refused file wrote tuples:\n%.300s", out)
	}

	out, stderr, err = run(t, good.String(), "relationships", "write", "--data-dir", data, "--batch", "500", "-")
	if err != nil {
		t.Fatalf("write: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, fmt.Sprintf("wrote %d tuples of stdin", n)) {
		t.Fatalf("summary: %s", out)
	}
	if _, err := os.Stat(filepath.Join(data, loadProgressFile)); !os.IsNotExist(err) {
		t.Errorf("a finished load left its progress behind: %v", err)
	}
	out, _, err = run(t, "", "relationships", "read", "--data-dir", data, "--object", "project:p1")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out, "\n"); got != n {
		t.Fatalf("read %d tuples, want %d", got, n)
	}
	csvOut, _, err := run(t, "", "relationships", "read", "--data-dir", data, "--object", "project:", "--user", "user:u7", "--output", "csv")
	if err != nil || csvOut != "user:u7,viewer,project:p1\n" {
		t.Fatalf("csv read: %q %v", csvOut, err)
	}
	// read's JSONL is delete's input.
	if _, stderr, err := run(t, out, "relationships", "delete", "--data-dir", data); err != nil {
		t.Fatalf("delete: %v\n%s", err, stderr)
	}
	out, _, _ = run(t, "", "relationships", "read", "--data-dir", data, "--object", "project:p1")
	if out != "" {
		t.Fatalf("tuples left after delete:\n%.300s", out)
	}
}

// TestRelationshipsServerResume: through a real `serve --dev`, a load that
// fails midway resumes at the first unwritten batch when run again (fewer
// calls than a fresh load), and the result is the whole file.
func TestRelationshipsServerResume(t *testing.T) {
	dir := t.TempDir()
	srvData := filepath.Join(dir, "server")
	base := startServe(t, srvData)
	admin := mint(t, srvData, "operator", "acme", "--scope", "clearance:admin")

	// A proxy in front of the server that fails the third relationships call
	// (fault injection) until told otherwise, and counts the calls.
	target, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(target)
	var calls, failAt atomic.Int64
	failAt.Store(3)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/relationships" {
			if calls.Add(1) == failAt.Load() {
				http.Error(w, "injected", http.StatusInternalServerError)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()

	file := filepath.Join(dir, "org.csv")
	var b strings.Builder
	b.WriteString("user,relation,object\n")
	const n = 250
	for i := range n {
		fmt.Fprintf(&b, "user:u%d,member,project:acme-p%d\n", i, i%7)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(dir, "cli") // the CLI's data dir: progress only
	args := []string{"relationships", "write", "--server", proxy.URL, "--token", admin, "--data-dir", local, "--batch", "50", file}
	if _, _, err := run(t, "", args...); err == nil || !strings.Contains(err.Error(), "tuples 101..150") {
		t.Fatalf("first run: err %v, want a failure at tuples 101..150", err)
	}
	calls.Store(0)
	failAt.Store(-1)
	out, stderr, err := run(t, "", args...)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "resuming write of "+file+" at tuple 101 of 250") {
		t.Errorf("no resume notice:\n%s", stderr)
	}
	if got := calls.Load(); got != 3 { // 101..150, 151..200, 201..250
		t.Errorf("second run made %d calls, want 3 (resumed after the 100 written tuples)", got)
	}
	if !strings.Contains(out, "wrote 250 tuples") {
		t.Errorf("summary: %s", out)
	}

	// Every tuple arrived: each user can now see tickets of its project.
	c, err := client.New(client.Config{Server: base, Credential: admin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpsertTickets(context.Background(), []client.Ticket{
		{ID: "P6-1", Tenant: "acme", Project: "acme-p6", Title: "printer jam", Body: "the printer on floor 6 jams"},
	}); err != nil {
		t.Fatal(err)
	}
	// u244 is the last tuple of the file (244 % 7 == 6), written after the resume.
	user, err := client.New(client.Config{Server: base, Credential: mint(t, srvData, "u244", "acme")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := user.Ticket(context.Background(), "P6-1"); err != nil {
		t.Fatalf("u244 cannot read its project's ticket: %v", err)
	}
}

// TestRelationshipsServerRefusesBadFileWithoutCalls: validation happens before
// any call, so a bad tuple in the last line sends nothing to the server.
func TestRelationshipsServerRefusesBadFileWithoutCalls(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	in := "{\"user\":\"user:a\",\"relation\":\"viewer\",\"object\":\"project:x\"}\n{\"user\":\"user:a\",\"relation\":\"active\",\"object\":\"delegation:a~b\"}\n"
	_, stderr, err := run(t, in, "relationships", "write", "--server", srv.URL, "--token", "t", "--data-dir", t.TempDir(), "-")
	if err == nil || !strings.Contains(stderr, "stdin:2:") {
		t.Fatalf("err %v\n%s", err, stderr)
	}
	if calls.Load() != 0 {
		t.Errorf("%d calls to the server for a refused file", calls.Load())
	}
}

// TestRelationshipsRefusesDataDirOfRunningServer: writing to the sqlite
// engine of a data dir a server runs on is refused (the server's caches count
// only its own writes) and points to --server.
func TestRelationshipsRefusesDataDirOfRunningServer(t *testing.T) {
	data := t.TempDir()
	startServe(t, data)
	in := `{"user":"user:a","relation":"viewer","object":"project:x"}` + "\n"
	_, _, err := run(t, in, "relationships", "write", "--data-dir", data, "-")
	if err == nil || !strings.Contains(err.Error(), "in use by another process") || !strings.Contains(err.Error(), "--server") {
		t.Fatalf("write to a served data dir: %v", err)
	}
}
