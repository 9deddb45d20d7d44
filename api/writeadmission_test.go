package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// heldWriter is a fault injector: the real engine, except that Write blocks
// until release is closed (or its context ends).
type heldWriter struct {
	authz.Engine
	started chan struct{}
	release chan struct{}
}

func (h *heldWriter) Write(ctx context.Context, writes, deletes []authz.Tuple) error {
	h.started <- struct{}{}
	select {
	case <-h.release:
		return h.Engine.Write(ctx, writes, deletes)
	case <-ctx.Done():
		return fmt.Errorf("held write: %w: %w", clearance.ErrUnavailable, ctx.Err())
	}
}

// TestWriteAdmission: writes have slots of their own. With the one write slot
// taken and no queue, a second write is refused with 503 and Retry-After at
// once, while a search still runs; the slot freed admits the next write.
func TestWriteAdmission(t *testing.T) {
	h := &heldWriter{Engine: demoEngine(t), started: make(chan struct{}, 10), release: make(chan struct{})}
	admin := authz.Principal{Kind: authz.KindUser, Tenant: "acme", User: "ada", Scopes: []string{ScopeAdmin, ScopeTicketsRead}}
	srv := New(Config{WriteLimits: Limits{MaxConcurrent: 1, MaxQueue: -1}}, Deps{
		Auth:  staticAuth{"ada": admin, "olga": {Kind: authz.KindUser, Tenant: "acme", User: "olga", Scopes: []string{ScopeAdmin}}},
		Areas: []Area{&SearchAPI{Planner: newHeldPlanner(), Relationships: h}},
	})
	base := serveHandler(t, srv.Handler())
	body := `{"writes":[{"user":"user:anne","relation":"member","object":"project:apollo"}]}`
	write := func(who string) <-chan *http.Response {
		out := make(chan *http.Response, 1)
		go func() {
			resp, _ := hsendNoFatal(http.MethodPost, base+"/v1/relationships", body, "Authorization", "Bearer "+who, "Content-Type", "application/json")
			out <- resp
		}()
		return out
	}
	running := write("ada")
	<-h.started
	resp, b := hsend(t, http.MethodPost, base+"/v1/relationships", body, "Authorization", "Bearer olga", "Content-Type", "application/json")
	overloadProblem(t, resp, b, http.StatusServiceUnavailable, "overloaded")
	if !strings.Contains(string(b), "writes running") {
		t.Errorf("detail should name the write path: %s", b)
	}
	// Reads have their own slots: a search is admitted (the held planner blocks
	// it, so it is seen starting, then released).
	planner := srv.deps.Areas[0].(*SearchAPI).Planner.(*heldPlanner)
	search := searchAsync(t, base, "ada", "read while writes are full")
	select {
	case <-planner.started:
	case <-time.After(5 * time.Second):
		t.Fatal("search not admitted while the write slot was taken")
	}
	close(planner.release)
	if r := <-search; r == nil || r.StatusCode != http.StatusOK {
		t.Fatalf("search: %+v", r)
	}
	close(h.release)
	if r := <-running; r == nil || r.StatusCode != http.StatusOK {
		t.Fatalf("held write: %+v", r)
	}
	h.started = make(chan struct{}, 10)
	resp, b = hsend(t, http.MethodPost, base+"/v1/relationships", body, "Authorization", "Bearer olga", "Content-Type", "application/json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("write after the slot freed: %d %s", resp.StatusCode, b)
	}
}

// TestEveryMutatingRouteIsAdmitted: a /v1 route that changes state must be a
// write route (or a read route, for POST /v1/search and /v1/flow/check), so a
// new endpoint cannot bypass admission control by being forgotten here.
func TestEveryMutatingRouteIsAdmitted(t *testing.T) {
	srv := New(Config{}, Deps{Auth: staticAuth{}, Areas: []Area{&SearchAPI{}, &FlowAPI{}}, APIKeys: nil})
	seen := 0
	for _, r := range srv.Echo().Routes() {
		if !strings.HasPrefix(r.Path, "/v1/") || strings.HasSuffix(r.Path, "/*") || // echo's not-found catch-all
			r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			continue
		}
		key := r.Method + " " + r.Path
		if !readRoutes[key] && !writeRoutes[key] {
			t.Errorf("%s is neither a read nor a write route of admission control", key)
		}
		seen++
	}
	if seen < len(writeRoutes) {
		t.Errorf("saw %d mutating routes, fewer than the %d write routes: are the areas registered?", seen, len(writeRoutes))
	}
}
