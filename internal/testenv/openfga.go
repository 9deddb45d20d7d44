package testenv

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// OpenFGAServer is a real `openfga run` process on free loopback ports.
type OpenFGAServer struct {
	// URL is the HTTP API's base URL.
	URL    string
	cmd    *exec.Cmd
	exited chan struct{}
	once   sync.Once
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartOpenFGA runs the OpenFGA binary with the memory datastore, no metrics and
// no playground, requiring the preshared key (none if key is empty), plus extra
// flags; it waits until the server answers /healthz and kills it when the test
// ends.
func StartOpenFGA(t testing.TB, key string, extra ...string) *OpenFGAServer {
	t.Helper()
	return startOpenFGA(t, key, []string{"--datastore-engine", "memory"}, extra)
}

// MigrateOpenFGAPostgres runs `openfga migrate` on the PostgreSQL database at
// uri, which StartOpenFGAPostgres needs first. Run it once: several servers then
// share the migrated database.
func MigrateOpenFGAPostgres(t testing.TB, uri string) {
	t.Helper()
	bin := OpenFGABinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "migrate", "--datastore-engine", "postgres", "--datastore-uri", uri).CombinedOutput()
	if err != nil {
		t.Fatalf("openfga migrate: %v\n%s", err, out)
	}
}

// StartOpenFGAPostgres runs the OpenFGA binary like StartOpenFGA, on the
// PostgreSQL datastore at uri (migrated by MigrateOpenFGAPostgres). Servers
// started on one uri are one OpenFGA cluster: they share stores and tuples.
func StartOpenFGAPostgres(t testing.TB, uri, key string, extra ...string) *OpenFGAServer {
	t.Helper()
	return startOpenFGA(t, key, []string{"--datastore-engine", "postgres", "--datastore-uri", uri}, extra)
}

func startOpenFGA(t testing.TB, key string, datastore, extra []string) *OpenFGAServer {
	t.Helper()
	bin := OpenFGABinary(t)
	httpAddr := FreeAddr(t)
	args := append([]string{"run"}, datastore...)
	args = append(args,
		"--http-addr", httpAddr,
		"--grpc-addr", FreeAddr(t),
		"--metrics-enabled=false",
		"--playground-enabled=false",
		"--log-level", "warn",
	)
	if key != "" {
		args = append(args, "--authn-method", "preshared", "--authn-preshared-keys", key)
	}
	cmd := exec.Command(bin, append(args, extra...)...)
	logs := &syncBuilder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openfga: %v", err)
	}
	s := &OpenFGAServer{URL: "http://" + httpAddr, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), "SERVING") {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("openfga did not become healthy: %v\n%s", err, logs.String())
		}
		select {
		case <-s.exited:
			t.Fatalf("openfga exited at start:\n%s", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop kills the server with SIGKILL (kill -9: tests of an engine that went
// away, no graceful shutdown) and waits for it.
func (s *OpenFGAServer) Stop() {
	s.once.Do(func() { _ = s.cmd.Process.Kill() })
	<-s.exited
}

// syncBuilder collects a process's output; the process writes it from the
// goroutines exec starts while the test may read it.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncBuilder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuilder) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
