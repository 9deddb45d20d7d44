package indexer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clearance-dev/clearance/retrieval"
)

// ticketServer speaks the POST /v1/tickets and DELETE /v1/tickets/{id}
// protocol of the API: strict decoding, all or nothing per request, bearer
// auth. It keeps what it was sent.
type ticketServer struct {
	mu       sync.Mutex
	tickets  map[string]retrieval.Ticket
	requests int
	maxBody  int
}

func (s *ticketServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer secret" {
		http.Error(w, `{"title":"unauthenticated"}`, http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/tickets":
		var req struct {
			Tickets []Row `json:"tickets"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, `{"title":"invalid","detail":"bad json"}`, http.StatusBadRequest)
			return
		}
		if r.ContentLength > int64(s.maxBody) {
			s.maxBody = int(r.ContentLength)
		}
		for i, t := range req.Tickets {
			if err := t.Validate(fmt.Sprintf("tickets[%d]", i)); err != nil || t.Deleted {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, `{"title":"invalid input","detail":%q}`, fmt.Sprint(err))
				return
			}
		}
		for _, t := range req.Tickets {
			s.tickets[t.ID] = t.Ticket
		}
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v1/tickets/"):
		id := strings.TrimPrefix(r.URL.Path, "/v1/tickets/")
		if _, ok := s.tickets[id]; !ok {
			http.Error(w, `{"title":"not found"}`, http.StatusNotFound)
			return
		}
		delete(s.tickets, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func TestPush(t *testing.T) {
	ts := &ticketServer{tickets: map[string]retrieval.Ticket{}}
	srv := httptest.NewServer(ts)
	defer srv.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "t.jsonl")
	rows := genTickets(21, 120, 300)
	del := Row{Ticket: retrieval.Ticket{ID: rows[3].ID}, Deleted: true}
	writeJSONL(t, file, append(rows, del, Row{Ticket: retrieval.Ticket{ID: "T-gone"}, Deleted: true}),
		`{"id":"T-x","tenant":"acme","project":"bad project","title":"t"}`)
	src, err := NewJSONL(JSONLConfig{Path: file, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewFileState(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := PushConfig{Server: srv.URL + "/", Token: "secret", MaxRequestBytes: 16 << 10, State: st}
	sum, err := Push(context.Background(), cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Seen != 123 || sum.Embedded != 120 || sum.Deleted != 1 || sum.Unchanged != 1 || sum.Failed != 1 || sum.Failures[0].Ref != "t.jsonl:123" {
		t.Fatalf("push: %+v", sum)
	}
	want := expected(append(rows, del))
	if len(ts.tickets) != len(want) {
		t.Fatalf("server has %d tickets, want %d", len(ts.tickets), len(want))
	}
	for id, w := range want {
		if got := ts.tickets[id]; got.Body != w.Body || got.Project != w.Project || !got.UpdatedAt.Equal(w.UpdatedAt) {
			t.Errorf("ticket %s: got %+v", id, got)
		}
	}
	if ts.maxBody > 16<<10+MaxTitleBytes+2048 {
		t.Errorf("a request of %d bytes exceeds the cap", ts.maxBody)
	}
	// The watermark was saved: a second push of the unchanged file sends nothing.
	n := ts.requests
	if sum, err := Push(context.Background(), cfg, src); err != nil || sum.Seen != 0 || ts.requests != n {
		t.Fatalf("second push: %+v %v (%d requests)", sum, err, ts.requests-n)
	}
	// A bad token is an error of the run, not of rows.
	writeJSONL(t, file, rows[:1])
	cfg.Token = "wrong"
	if _, err := Push(context.Background(), cfg, src); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("push with a bad token: %v", err)
	}
}
