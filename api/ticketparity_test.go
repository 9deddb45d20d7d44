package api

import (
	"context"
	"iter"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
)

// countingEngine is the real engine with its calls counted (instrumentation,
// not a fake: every answer is the engine's).
type countingEngine struct {
	authz.Engine
	mu           sync.Mutex
	calls, items int
	lists        int
	objects      []string
}

func (e *countingEngine) BatchCheck(ctx context.Context, q authz.Query, c []authz.Check) ([]bool, error) {
	e.mu.Lock()
	e.calls++
	e.items += len(c)
	for _, x := range c {
		e.objects = append(e.objects, x.Relation+" "+x.Object)
	}
	e.mu.Unlock()
	return e.Engine.BatchCheck(ctx, q, c)
}

func (e *countingEngine) ListObjects(ctx context.Context, q authz.Query, user, rel, typ string) iter.Seq2[string, error] {
	e.mu.Lock()
	e.lists++
	e.mu.Unlock()
	return e.Engine.ListObjects(ctx, q, user, rel, typ)
}

func (e *countingEngine) take() (calls, items, lists int, objects []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	calls, items, lists, objects = e.calls, e.items, e.lists, e.objects
	e.calls, e.items, e.lists, e.objects = 0, 0, 0, nil
	return
}

// TestTicketReadEngineParity: over real HTTP and MCP, reading an invisible
// ticket of the caller's tenant, another tenant's ticket and an id that does
// not exist makes the engine do the same calls (one BatchCheck of one check of
// ticket:<id>), so the answer's latency cannot tell them apart (issue 14,
// defect 4). Before, only the first reached the engine.
func TestTicketReadEngineParity(t *testing.T) {
	f := newFixture(t)
	eng := &countingEngine{Engine: f.engine}
	planner := filter.New(filter.Config{}, eng, f.store, retrieval.NewHashing(retrieval.HashingConfig{Dim: 256}), &filter.MemoryLog{})
	srv := New(Config{}, Deps{Auth: staticAuth(testPrincipals), Areas: []Area{&SearchAPI{Planner: planner}}})
	(&MCP{Planner: planner, Version: "test"}).Mount(srv)
	base := serveHandler(t, srv.Handler())
	read := map[string]func(id string){
		"http": func(id string) {
			resp, body := hget(t, base+"/v1/tickets/"+id, "Authorization", "Bearer anne")
			problem(t, resp, body, http.StatusNotFound)
		},
		"mcp": func(id string) {
			resp, body := hsend(t, http.MethodPost, base+MCPPath,
				`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":"`+id+`"}}}`,
				"Authorization", "Bearer anne", "Content-Type", "application/json", "Accept", "application/json, text/event-stream")
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "ticket not found") {
				t.Fatalf("get_ticket %s: %d %s", id, resp.StatusCode, body)
			}
		},
	}
	for via, get := range read {
		for _, id := range []string{"SEC-1", "HR-3", "PORTAL-1", "NOPE-1", "WEB-999"} {
			eng.take()
			get(id)
			calls, items, lists, objects := eng.take()
			if calls != 1 || items != 1 || lists != 0 || objects[0] != "can_view ticket:"+id {
				t.Errorf("%s %s: %d BatchCheck calls of %d checks %v, %d listings; want 1 of 1 on ticket:%s, none",
					via, id, calls, items, objects, lists, id)
			}
		}
	}
}
