package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while the demo writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemo runs the whole demo (embedded engine on sqlite, embedded store, dev
// issuer, real HTTP) and checks the walkthrough: each principal's block lists
// only tickets it may see, the expired agent gets nothing, the other tenant
// only its own tickets, the blocked user not the blocked ticket.
func TestDemo(t *testing.T) {
	out, stop := startDemo(t)
	stop()
	blocks := map[string][]string{} // label -> ticket ids
	status := map[string]string{}
	var cur string
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case !strings.HasPrefix(line, " ") && strings.Contains(line, "result(s)"):
			cur = f[0]
			status[cur] = f[len(f)-3]
		case strings.HasPrefix(line, "    ") && cur != "" && !strings.HasPrefix(f[0], "("):
			blocks[cur] = append(blocks[cur], f[0])
		}
	}
	if len(status) != len(demoCases) {
		t.Fatalf("walkthrough shows %d principals, want %d:\n%s", len(status), len(demoCases), out.String())
	}
	prefixes := func(label string, allowed ...string) {
		t.Helper()
		if len(blocks[label]) == 0 {
			t.Errorf("%s: no results", label)
		}
		for _, id := range blocks[label] {
			ok := false
			for _, p := range allowed {
				// "WEB-" is a prefix, "DOCS-1" one ticket.
				ok = ok || id == p || (strings.HasSuffix(p, "-") && strings.HasPrefix(id, p))
			}
			if !ok {
				t.Errorf("%s got %s; allowed prefixes %v", label, id, allowed)
			}
		}
	}
	prefixes("bob", "WEB-", "API-", "DOCS-", "SEC-", "HR-", "FIN-")
	prefixes("anne", "WEB-", "API-", "DOCS-1")
	prefixes("anne+copilot", "WEB-")
	prefixes("hank", "PORTAL-", "OPS-")
	prefixes("erin", "WEB-", "API-")
	for _, id := range blocks["erin"] {
		if id == "WEB-1" {
			t.Error("erin is blocked on WEB-1 but got it")
		}
	}
	if len(blocks["anne+mailbot"]) != 0 || status["anne+mailbot"] != "exhausted" {
		t.Errorf("mailbot (expired grant): %v %s", blocks["anne+mailbot"], status["anne+mailbot"])
	}
	if !strings.Contains(out.String(), "export TOKEN_ANNE=ey") {
		t.Error("no ready-to-paste token")
	}
	checkTryIt(t, out.String())
}

// checkTryIt: the demo's "try it" part names its real data dir in the token
// command, prints an operator's audit token, and says in a comment line before
// each curl command what it shows.
func checkTryIt(t *testing.T, out string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	_, dir, ok := strings.Cut(lines[0], "; data dir ")
	if !ok {
		t.Fatalf("first line names no data dir: %q", lines[0])
	}
	if !strings.Contains(out, "clearance token --data-dir "+shellQuote(dir)+" --sub") || strings.Contains(out, "DATA_DIR") {
		t.Errorf("the token command does not name the data dir %s", dir)
	}
	if !strings.Contains(out, "export TOKEN_AUDIT=ey") || !strings.Contains(out, `/v1/audit?limit=3' -H "Authorization: Bearer $TOKEN_AUDIT"`) {
		t.Error("no operator token for the audit log")
	}
	curls := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "curl ") {
			curls++
			if i == 0 || !strings.HasPrefix(lines[i-1], "# ") {
				t.Errorf("no comment line before %q", l)
			}
		}
	}
	if curls < 8 {
		t.Errorf("%d curl commands, want 8", curls)
	}
}

// startDemo runs the demo in a fresh data dir until its walkthrough is printed
// (at most 90 s); stop ends it and fails the test if it ended with an error.
func startDemo(t *testing.T) (out *syncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	cfg := demoConfig("127.0.0.1:0", t.TempDir())
	if err := cfg.resolve(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- runDemo(ctx, out, cfg, slog.New(slog.DiscardHandler)) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	}
	t.Cleanup(stop)
	deadline := time.After(90 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops") {
		select {
		case err := <-done:
			stopped = true
			cancel()
			t.Fatalf("demo stopped: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("no walkthrough after 90 s:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return out, stop
}
