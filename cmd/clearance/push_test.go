package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/retrieval"
)

// pushServer is a real clearance server (serve's backends in a data dir of its
// own, the demo org loaded) with an indexing key and a read-only key of acme.
type pushServer struct {
	url              string
	indexKey, reader string
	store            retrieval.Store
}

func startPushServer(t *testing.T) pushServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := demoConfig("127.0.0.1:0", t.TempDir())
	cfg.EmbeddingDim = 64
	if err := cfg.resolve(); err != nil {
		t.Fatal(err)
	}
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadDemoOrg(ctx, a.engine); err != nil {
		t.Fatal(err)
	}
	_, indexKey, err := a.keys.Create(ctx, "acme", "acme-ingest", "push", []string{"clearance:index"}, auth.Creator{Kind: auth.CreatorOperator})
	if err != nil {
		t.Fatal(err)
	}
	_, reader, err := a.keys.Create(ctx, "acme", "acme-bot", "read", []string{"tickets:read"}, auth.Creator{Kind: auth.CreatorOperator})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln, func(base string) error { up <- base; return nil }) }()
	var base string
	select {
	case base = <-up:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() { cancel(); <-done; a.Close() })
	return pushServer{url: base, indexKey: indexKey, reader: reader, store: a.store}
}

// stored counts the tickets of the server's index.
func (s pushServer) stored(t *testing.T, ids ...string) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		if _, err := s.store.Get(context.Background(), id); err == nil {
			n++
		}
	}
	return n
}

const pushRows = `{"id":"PUSH-1","tenant":"acme","project":"acme-web","title":"first","body":"pushed row one"}
{"id":"PUSH-2","tenant":"acme","project":"acme-web","title":"second","body":"pushed row two"}
{"id":"PUSH-3","tenant":"acme","project":"acme-api","title":"third","body":"pushed row three"}
`

// TestPushProgressPerServer: push progress belongs to a server and a source.
// The same file pushed to a second server is sent in full (it used to print
// "seen 0, embedded 0" and send nothing); a repeat push to the same server
// sends nothing and says why and where the progress is; --from-start resends.
func TestPushProgressPerServer(t *testing.T) {
	s1, s2 := startPushServer(t), startPushServer(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "rows.jsonl")
	if err := os.WriteFile(src, []byte(pushRows), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "push-data")
	push := func(s pushServer, extra ...string) (string, error) {
		return runCLI(t, append([]string{"index", "--server", s.url, "--token", s.indexKey, "--source", src, "--data-dir", data}, extra...)...)
	}
	ids := []string{"PUSH-1", "PUSH-2", "PUSH-3"}
	if out, err := push(s1); err != nil || !strings.Contains(out, "seen 3, embedded 3") || s1.stored(t, ids...) != 3 {
		t.Fatalf("first push to server 1: %v\n%s", err, out)
	}
	if out, err := push(s2); err != nil || !strings.Contains(out, "seen 3, embedded 3") || s2.stored(t, ids...) != 3 {
		t.Fatalf("push of the same file to server 2: %v\n%s (server 2 has %d)", err, out, s2.stored(t, ids...))
	}
	out, err := push(s1)
	if err != nil || !strings.Contains(out, "seen 0,") || !strings.Contains(out, "nothing sent: no row of the source changed since the last push to "+s1.url) ||
		!strings.Contains(out, filepath.Join(data, "indexer-state.json")) {
		t.Fatalf("repeat push: %v\n%s", err, out)
	}
	if out, err := push(s1, "--from-start"); err != nil || !strings.Contains(out, "seen 3, embedded 0, unchanged 3") {
		t.Fatalf("push --from-start: %v\n%s", err, out)
	}
}

// TestPushChecksCredential: a read-only or unknown key fails before the source
// is read, with an error that says why and a non-zero exit; the file's rows are
// not marked as pushed.
func TestPushChecksCredential(t *testing.T) {
	s := startPushServer(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "rows.jsonl")
	if err := os.WriteFile(src, []byte(pushRows), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "push-data")
	for _, c := range []struct{ token, want string }{
		{s.reader, "may not index on " + s.url + ": it needs the clearance:index scope (403"},
		{"clr_not_a_key", "did not accept the token or key (401"},
	} {
		out, err := runCLI(t, "index", "--server", s.url, "--token", c.token, "--source", src, "--data-dir", data)
		if err == nil || errors.As(err, new(exitError)) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("push with token %.12s…: err %v\n%s\nwant an error containing %q", c.token, err, out, c.want)
		}
		if strings.Contains(out, "pushed ") {
			t.Errorf("a refused push printed a summary:\n%s", out)
		}
	}
	if n := s.stored(t, "PUSH-1", "PUSH-2", "PUSH-3"); n != 0 {
		t.Fatalf("server holds %d pushed tickets", n)
	}
	if _, err := os.Stat(filepath.Join(data, "indexer-state.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("progress was saved for a refused push: %v", err)
	}
	// The right key then sends everything.
	if out, err := runCLI(t, "index", "--server", s.url, "--token", s.indexKey, "--source", src, "--data-dir", data); err != nil || !strings.Contains(out, "embedded 3") {
		t.Fatalf("push with the index key: %v\n%s", err, out)
	}
}
