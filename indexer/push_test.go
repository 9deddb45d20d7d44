package indexer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/client"
	"github.com/clearance-dev/clearance/retrieval"
)

// ticketServer speaks the POST /v1/tickets protocol of the API: strict
// decoding, at most 1000 rows, no id twice, all or nothing per request, bearer
// auth, counts in the answer. It keeps what it was sent.
type ticketServer struct {
	mu       sync.Mutex
	tickets  map[string]retrieval.Ticket
	requests int
	maxBody  int
}

func (s *ticketServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "Bearer read-only" {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"title":"forbidden","detail":"needs scope clearance:index"}`)
		return
	}
	if r.Header.Get("Authorization") != "Bearer secret" {
		http.Error(w, `{"title":"unauthenticated"}`, http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/tickets" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.maxBody = max(s.maxBody, int(r.ContentLength))
	var req struct {
		Tickets []Row `json:"tickets"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	problem := func(detail string) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"title":"invalid input","detail":%q}`, detail)
	}
	if err := dec.Decode(&req); err != nil || len(req.Tickets) == 0 || len(req.Tickets) > 1000 {
		problem(fmt.Sprintf("bad request (%v, %d tickets)", err, len(req.Tickets)))
		return
	}
	ids := map[string]bool{}
	for i, t := range req.Tickets {
		if err := t.Validate(fmt.Sprintf("tickets[%d]", i)); err != nil {
			problem(err.Error())
			return
		}
		if ids[t.ID] {
			problem(fmt.Sprintf("tickets[%d].id: duplicate", i))
			return
		}
		ids[t.ID] = true
	}
	var resp client.UpsertResult
	resp.Received = len(req.Tickets)
	for _, t := range req.Tickets {
		old, ok := s.tickets[t.ID]
		switch {
		case t.Deleted && ok:
			delete(s.tickets, t.ID)
			resp.Deleted++
		case t.Deleted || (ok && old.Title == t.Title && old.Body == t.Body && old.Project == t.Project):
			resp.Unchanged++
		default:
			s.tickets[t.ID] = t.Ticket
			resp.Indexed++
			resp.Chunks += Chunker{}.Count(t.Ticket)
		}
	}
	_ = json.NewEncoder(w).Encode(resp)
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
	if sum.Seen != 123 || sum.Embedded != 120 || sum.Deleted != 1 || sum.Unchanged != 1 || sum.Failed != 1 || sum.Failures[0].Ref != "t.jsonl:123" || sum.Chunks == 0 {
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
	if ts.requests < 5 {
		t.Errorf("%d requests: the 16 KiB cap did not split the batches", ts.requests)
	}
	// The watermark was saved: a second push of the unchanged file sends no
	// ticket (only the credential check) and says why.
	n := ts.requests
	if sum, err := Push(context.Background(), cfg, src); err != nil || sum.Seen != 0 || ts.requests != n+1 || !strings.Contains(sum.Note, "no row of the source changed since the last push to "+srv.URL) {
		t.Fatalf("second push: %+v %v (%d requests)", sum, err, ts.requests-n)
	}
	// The progress is the server's: the same file pushed to another server is
	// sent in full.
	ts2 := &ticketServer{tickets: map[string]retrieval.Ticket{}}
	srv2 := httptest.NewServer(ts2)
	defer srv2.Close()
	cfg2 := cfg
	cfg2.Server = srv2.URL
	if sum, err := Push(context.Background(), cfg2, src); err != nil || sum.Seen != 123 || len(ts2.tickets) != len(want) {
		t.Fatalf("push to a second server: %+v %v (%d tickets there)", sum, err, len(ts2.tickets))
	}
	// Two versions of one ticket in a batch go in separate requests, in order.
	v2 := rows[7]
	v2.Body = "second version"
	writeJSONL(t, file, []Row{rows[7], v2, rows[8]})
	if sum, err := Push(context.Background(), cfg, src); err != nil || sum.Failed != 0 || sum.Embedded != 1 || ts.tickets[v2.ID].Body != v2.Body {
		t.Fatalf("push of a repeated id: %+v %v", sum, err)
	}

	// A bad token is an error of the run, not of rows.
	writeJSONL(t, file, rows[:1])
	cfg.Token = "wrong"
	if _, err := Push(context.Background(), cfg, src); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("push with a bad token: %v", err)
	}
}

// unreadSource fails the test when read: the credential check comes first.
type unreadSource struct{ t *testing.T }

func (s unreadSource) Name() string { return "unread" }

func (s unreadSource) Read(context.Context, string) iter.Seq2[Batch, error] {
	s.t.Error("the source was read before the credential was checked")
	return func(func(Batch, error) bool) {}
}

// TestPushChecksCredentialFirst: a bad or read-only credential fails the push
// with an error saying which, before the source is read or progress saved.
func TestPushChecksCredentialFirst(t *testing.T) {
	ts := &ticketServer{tickets: map[string]retrieval.Ticket{}}
	srv := httptest.NewServer(ts)
	defer srv.Close()
	st, err := NewFileState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		token string
		want  error
		text  string
	}{
		{"wrong", clearance.ErrUnauthenticated, "did not accept the token or key (401"},
		{"read-only", clearance.ErrForbidden, "needs the clearance:index scope (403"},
	} {
		_, err := Push(context.Background(), PushConfig{Server: srv.URL, Token: c.token, State: st}, unreadSource{t})
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("token %s: %v, want %q", c.token, err, c.text)
		}
	}
	if len(ts.tickets) != 0 {
		t.Fatalf("the server got %d tickets", len(ts.tickets))
	}
}
