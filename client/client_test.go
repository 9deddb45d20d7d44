package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/clearance-dev/clearance"
)

// The server-side behaviour is tested against a real `clearance serve` in
// cmd/clearance (TestGoClient*); these tests inject faults the real server
// does not produce on demand.

// TestTypedErrors: a problem+json answer becomes an *Error that matches its
// clearance kind and, for a 400, the field error.
func TestTypedErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"type":"https://clearance.dev/problems/invalid-input","title":"Bad Request","status":400,"detail":"invalid input","errors":[{"field":"query","reason":"is required"}],"request_id":"r1"}`))
	}))
	defer srv.Close()
	c, err := New(Config{Server: srv.URL + "/", Credential: "k"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Search(context.Background(), SearchRequest{})
	var apiErr *Error
	var fe *clearance.FieldError
	if !errors.Is(err, clearance.ErrInvalid) || !errors.As(err, &apiErr) || !errors.As(err, &fe) {
		t.Fatalf("err %v: want ErrInvalid, *Error and *FieldError", err)
	}
	if fe.Field != "query" || apiErr.Problem.RequestID != "r1" || apiErr.Status != 400 {
		t.Errorf("decoded %+v / %+v", apiErr, fe)
	}
	if errors.Is(err, clearance.ErrNotFound) {
		t.Error("a 400 matches ErrNotFound")
	}
}

// TestRetriesTransientOnly: 503 is retried (and the body sent again), 400 is
// not.
func TestRetriesTransientOnly(t *testing.T) {
	var calls atomic.Int64
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(status)
			return
		}
		_, _ = w.Write([]byte(`{"written":2}`))
	}))
	defer srv.Close()
	c, _ := New(Config{Server: srv.URL})
	ts := []Tuple{{User: "user:a", Relation: "viewer", Object: "project:x"}, {User: "user:b", Relation: "viewer", Object: "project:x"}}
	res, err := c.WriteRelationships(context.Background(), ts, nil)
	if err != nil || res.Written != 2 || calls.Load() != 2 {
		t.Fatalf("503 then 200: %v %+v after %d calls", err, res, calls.Load())
	}
	calls.Store(0)
	status = http.StatusBadRequest
	if _, err := c.WriteRelationships(context.Background(), ts, nil); !errors.Is(err, clearance.ErrInvalid) || calls.Load() != 1 {
		t.Fatalf("400: %v after %d calls, want one call", err, calls.Load())
	}
}

// TestLimits: a call over the server's limit is refused before it is sent.
func TestLimits(t *testing.T) {
	c, _ := New(Config{Server: "http://127.0.0.1:1"})
	if _, err := c.WriteRelationships(context.Background(), make([]Tuple, MaxTuplesPerCall+1), nil); err == nil {
		t.Error("over-limit relationships call accepted")
	}
	if _, err := New(Config{Server: "ftp://x"}); !errors.Is(err, clearance.ErrInvalid) {
		t.Errorf("ftp server URL: %v", err)
	}
}
