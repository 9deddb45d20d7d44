package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/client"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// startServe runs `clearance serve --dev` (the real command: embedded engine
// on sqlite, embedded store, dev issuer) on a free loopback port with dataDir,
// waits until /readyz answers 200 and stops it when the test ends. It returns
// the server's URL.
func startServe(t *testing.T, dataDir string, extra ...string) string {
	t.Helper()
	addr := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	root := newRootCommand()
	var log syncBuffer
	root.SetOut(io.Discard)
	root.SetErr(&log)
	root.SetArgs(append([]string{"serve", "--dev", "--data-dir", dataDir, "--addr", addr}, extra...))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, log.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve stopped: %v\n%s", err, log.String())
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after 60 s:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run executes the clearance CLI in process with stdin and returns stdout,
// stderr and the error.
func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// mint runs `clearance token` on dataDir (its default audience: the URL the
// dev server recorded).
func mint(t *testing.T, dataDir, sub, tenant string, extra ...string) string {
	t.Helper()
	out, stderr, err := run(t, "", append([]string{"token", "--data-dir", dataDir, "--sub", sub, "--tenant", tenant}, extra...)...)
	if err != nil {
		t.Fatalf("token: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(out)
}

// loadTestdataOrg writes testdata/org.fga.yaml's relationships into the server at
// base through the CLI, as an operator of acme, and reads testdata's tickets.
// It returns the operator's token, a client with it and the tickets, which
// the caller pushes (and checks) itself.
func loadTestdataOrg(t *testing.T, data, base string) (string, *client.Client, []client.Ticket) {
	t.Helper()
	adminTok := mint(t, data, "operator", "acme", "--scope", "clearance:admin")
	if out, stderr, err := run(t, "", "relationships", "write", "--server", base, "--token", adminTok,
		"--data-dir", filepath.Join(t.TempDir(), "cli"), "../../testdata/org.fga.yaml"); err != nil {
		t.Fatalf("load org: %v\n%s%s", err, out, stderr)
	}
	admin, err := client.New(client.Config{Server: base, Credential: adminTok})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../../testdata/tickets.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tickets []client.Ticket
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var tk client.Ticket
		if err := json.Unmarshal(sc.Bytes(), &tk); err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return adminTok, admin, tickets
}
