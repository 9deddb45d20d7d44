package openfga_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/authztest"
	"github.com/clearance-dev/clearance/authz/openfga"
	"github.com/clearance-dev/clearance/internal/testenv"
)

const token = "test-preshared-key"

// server is a real `openfga run` process on loopback ports.
type server struct {
	url    string
	cmd    *exec.Cmd
	exited chan struct{}
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer runs OpenFGA with the memory datastore, no metrics, no playground, a
// preshared key, and the given extra flags; it is killed when the test ends.
func startServer(t testing.TB, extra ...string) *server {
	t.Helper()
	bin := testenv.OpenFGABinary(t)
	httpAddr := freePort(t)
	args := append([]string{"run",
		"--datastore-engine", "memory",
		"--http-addr", httpAddr,
		"--grpc-addr", freePort(t),
		"--metrics-enabled=false",
		"--playground-enabled=false",
		"--log-level", "warn",
		"--authn-method", "preshared",
		"--authn-preshared-keys", token,
		"--listObjects-deadline", "60s",
		"--request-timeout", "90s", // must not be lower than the listing deadline
	}, extra...)
	cmd := exec.Command(bin, args...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openfga: %v", err)
	}
	s := &server{url: "http://" + httpAddr, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
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

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

func newEngine(t testing.TB, cfg openfga.Config) *openfga.Engine {
	t.Helper()
	if cfg.APIToken == "" {
		cfg.APIToken = token
	}
	if cfg.ServerListObjectsDeadline == 0 {
		cfg.ServerListObjectsDeadline = 60 * time.Second
	}
	if cfg.StoreName == "" {
		// A store per engine: the suite expects an empty store each time.
		cfg.StoreName = fmt.Sprintf("s%d", time.Now().UnixNano())
	}
	e, err := openfga.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("openfga.New: %v", err)
	}
	return e
}

func TestConformanceServer(t *testing.T) {
	srv := startServer(t)
	authztest.Run(t, authztest.Backend{
		New: func(t *testing.T) authz.Engine {
			return newEngine(t, openfga.Config{URL: srv.url, MaxRetries: 1, MinRetryWait: time.Millisecond, RequestTimeout: 5 * time.Second})
		},
		// Unavailable runs last in the suite: stopping the shared server is the fault.
		Break: func(t *testing.T, _ authz.Engine) { srv.stop() },
	})
}

// TestStoreAndModelSetup: a named store is found again, the model is written once,
// and a pinned store id and model id are used as given.
func TestStoreAndModelSetup(t *testing.T) {
	srv := startServer(t)
	cfg := openfga.Config{URL: srv.url, StoreName: "clearance"}
	e1 := newEngine(t, cfg)
	e2 := newEngine(t, cfg)
	if e1.StoreID() != e2.StoreID() || e1.ModelID() != e2.ModelID() {
		t.Errorf("second start: store %s model %s, want %s %s", e2.StoreID(), e2.ModelID(), e1.StoreID(), e1.ModelID())
	}
	e3 := newEngine(t, openfga.Config{URL: srv.url, StoreID: e1.StoreID(), ModelID: e1.ModelID()})
	if e3.StoreID() != e1.StoreID() || e3.ModelID() != e1.ModelID() {
		t.Error("pinned store/model not used")
	}
	ctx := context.Background()
	if err := e1.Write(ctx, []authz.Tuple{{User: "user:u", Relation: "viewer", Object: "ticket:x"}}, nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := e3.Check(ctx, authz.Query{}, authz.Check{User: "user:u", Relation: "can_view", Object: "ticket:x"}); err != nil || !ok {
		t.Errorf("pinned engine check = %v, %v", ok, err)
	}
	if _, err := openfga.New(ctx, openfga.Config{URL: srv.url, StoreID: e1.StoreID(), ModelID: "01ARZ3NDEKTSV4RRFFQ69G5FAV", APIToken: token}); err == nil {
		t.Error("unknown model id accepted")
	}
	// A wrong token is no answer.
	_, err := openfga.New(ctx, openfga.Config{URL: srv.url, APIToken: "wrong", MaxRetries: -1})
	if !errors.Is(err, authz.ErrUnavailable) {
		t.Errorf("wrong token: %v, want ErrUnavailable", err)
	}
}

// TestRetriesServerErrors: 503 and 429 answers are retried with backoff; when they
// persist, the call fails with ErrUnavailable.
func TestRetriesServerErrors(t *testing.T) {
	srv := startServer(t)
	target, _ := url.Parse(srv.url)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var failures, checks atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/check") {
			checks.Add(1)
			if failures.Add(-1) >= 0 {
				code := http.StatusServiceUnavailable
				if checks.Load()%2 == 0 {
					code = http.StatusTooManyRequests
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(code)
				_, _ = io.WriteString(w, `{"code":"unavailable","message":"injected"}`)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	e := newEngine(t, openfga.Config{URL: front.URL, MaxRetries: 3, MinRetryWait: time.Millisecond})
	ctx := context.Background()
	if err := e.Write(ctx, []authz.Tuple{{User: "user:u", Relation: "viewer", Object: "ticket:x"}}, nil); err != nil {
		t.Fatal(err)
	}
	c := authz.Check{User: "user:u", Relation: "can_view", Object: "ticket:x"}
	failures.Store(2)
	checks.Store(0)
	if ok, err := e.Check(ctx, authz.Query{}, c); err != nil || !ok {
		t.Fatalf("check after 2 transient failures = %v, %v", ok, err)
	}
	if n := checks.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	failures.Store(100)
	checks.Store(0)
	ok, err := e.Check(ctx, authz.Query{}, c)
	if ok || !errors.Is(err, authz.ErrUnavailable) {
		t.Errorf("check under persistent 5xx = %v, %v; want ErrUnavailable", ok, err)
	}
	if n := checks.Load(); n != 4 {
		t.Errorf("%d attempts, want 1 + 3 retries", n)
	}
}

// TestServerDeadlineIsTruncation: a server that cuts the stream at its own deadline
// is reported as ErrTruncated, not as a short complete list.
func TestServerDeadlineIsTruncation(t *testing.T) {
	srv := startServer(t, "--listObjects-deadline", "1ms")
	e := newEngine(t, openfga.Config{URL: srv.url, ServerListObjectsDeadline: time.Millisecond})
	ctx := context.Background()
	ts := []authz.Tuple{{User: "user:u", Relation: "member", Object: "project:p"}}
	for i := range 2000 {
		ts = append(ts, authz.Tuple{User: "project:p", Relation: "project", Object: fmt.Sprintf("ticket:t%d", i)})
	}
	if err := e.Write(ctx, ts, nil); err != nil {
		t.Fatal(err)
	}
	ids, err := authztest.Collect(e.ListObjects(ctx, authz.Query{}, "user:u", "can_view", "ticket"))
	if !errors.Is(err, authz.ErrTruncated) {
		t.Fatalf("listing under a 1ms server deadline: %d ids, err %v; want ErrTruncated", len(ids), err)
	}
}
