package openfga_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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

// startServer runs OpenFGA (testenv.StartOpenFGA: memory datastore, the preshared
// key) with a long listing deadline and the given extra flags.
func startServer(t testing.TB, extra ...string) *testenv.OpenFGAServer {
	t.Helper()
	// The request timeout must not be lower than the listing deadline.
	return testenv.StartOpenFGA(t, token, append([]string{"--listObjects-deadline", "60s", "--request-timeout", "90s",
		"--listUsers-deadline", "60s", "--listUsers-max-results", "0"}, extra...)...)
}

func newEngine(t testing.TB, cfg openfga.Config) *openfga.Engine {
	t.Helper()
	if cfg.APIToken == "" {
		cfg.APIToken = token
	}
	if cfg.ServerListObjectsDeadline == 0 {
		cfg.ServerListObjectsDeadline = 60 * time.Second
	}
	if cfg.ServerListUsersDeadline == 0 {
		cfg.ServerListUsersDeadline = 60 * time.Second
	}
	if cfg.ServerListUsersMaxResults == 0 {
		cfg.ServerListUsersMaxResults = -1 // the server runs with --listUsers-max-results 0
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
			return newEngine(t, openfga.Config{URL: srv.URL, MaxRetries: 1, MinRetryWait: time.Millisecond, RequestTimeout: 5 * time.Second})
		},
		// Unavailable runs last in the suite: stopping the shared server is the fault.
		Break: func(t *testing.T, _ authz.Engine) { srv.Stop() },
	})
}

// TestStoreAndModelSetup: a named store is found again, the model is written once,
// and a pinned store id and model id are used as given.
func TestStoreAndModelSetup(t *testing.T) {
	srv := startServer(t)
	cfg := openfga.Config{URL: srv.URL, StoreName: "clearance"}
	e1 := newEngine(t, cfg)
	e2 := newEngine(t, cfg)
	if e1.StoreID() != e2.StoreID() || e1.ModelID() != e2.ModelID() {
		t.Errorf("second start: store %s model %s, want %s %s", e2.StoreID(), e2.ModelID(), e1.StoreID(), e1.ModelID())
	}
	e3 := newEngine(t, openfga.Config{URL: srv.URL, StoreID: e1.StoreID(), ModelID: e1.ModelID()})
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
	if _, err := openfga.New(ctx, openfga.Config{URL: srv.URL, StoreID: e1.StoreID(), ModelID: "01ARZ3NDEKTSV4RRFFQ69G5FAV", APIToken: token}); err == nil {
		t.Error("unknown model id accepted")
	}
	// A wrong token is no answer.
	_, err := openfga.New(ctx, openfga.Config{URL: srv.URL, APIToken: "wrong", MaxRetries: -1})
	if !errors.Is(err, authz.ErrUnavailable) {
		t.Errorf("wrong token: %v, want ErrUnavailable", err)
	}
}

// TestRetriesServerErrors: 503 and 429 answers are retried with backoff; when they
// persist, the call fails with ErrUnavailable.
func TestRetriesServerErrors(t *testing.T) {
	srv := startServer(t)
	target, _ := url.Parse(srv.URL)
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
	e := newEngine(t, openfga.Config{URL: srv.URL, ServerListObjectsDeadline: time.Millisecond})
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

// TestServerListUsersCapIsTruncation: a server that cuts ListUsers at its result
// cap or its deadline answers a short list without saying so; the adapter
// reports ErrTruncated instead of a short complete list.
func TestServerListUsersCapIsTruncation(t *testing.T) {
	ctx := context.Background()
	ts := []authz.Tuple{{User: "tenant:t", Relation: "tenant", Object: "project:p"}}
	for i := range 30 {
		ts = append(ts, authz.Tuple{User: fmt.Sprintf("user:u%d", i), Relation: "member", Object: "project:p"})
	}
	t.Run("cap", func(t *testing.T) {
		srv := startServer(t, "--listUsers-max-results", "10")
		e := newEngine(t, openfga.Config{URL: srv.URL, ServerListUsersMaxResults: 10})
		if err := e.Write(ctx, ts, nil); err != nil {
			t.Fatal(err)
		}
		users, err := e.ListUsers(ctx, authz.Query{}, "project:p", "can_view", "user")
		if !errors.Is(err, authz.ErrTruncated) {
			t.Fatalf("ListUsers under a cap of 10: %d users, err %v; want ErrTruncated", len(users), err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		srv := startServer(t, "--listUsers-deadline", "1ms")
		e := newEngine(t, openfga.Config{URL: srv.URL, ServerListUsersDeadline: time.Millisecond})
		if err := e.Write(ctx, ts, nil); err != nil {
			t.Fatal(err)
		}
		users, err := e.ListUsers(ctx, authz.Query{}, "project:p", "can_view", "user")
		if !errors.Is(err, authz.ErrTruncated) {
			t.Fatalf("ListUsers under a 1ms server deadline: %d users, err %v; want ErrTruncated", len(users), err)
		}
	})
}
