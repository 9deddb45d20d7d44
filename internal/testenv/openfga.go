package testenv

import (
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
	bin := OpenFGABinary(t)
	httpAddr := FreeAddr(t)
	args := []string{"run",
		"--datastore-engine", "memory",
		"--http-addr", httpAddr,
		"--grpc-addr", FreeAddr(t),
		"--metrics-enabled=false",
		"--playground-enabled=false",
		"--log-level", "warn",
	}
	if key != "" {
		args = append(args, "--authn-method", "preshared", "--authn-preshared-keys", key)
	}
	cmd := exec.Command(bin, append(args, extra...)...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
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

// Stop kills the server (tests of an engine that went away) and waits for it.
func (s *OpenFGAServer) Stop() {
	s.once.Do(func() { _ = s.cmd.Process.Kill() })
	<-s.exited
}
