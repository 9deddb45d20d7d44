package audit

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/authz"
)

// TestSealMatchesEncoding: the fast path (placeholders patched in the writer)
// gives exactly json.Marshal of the sealed record, and its hash is what a
// verifier recomputes from the stored bytes, also when user-controlled strings
// look like the chain fields.
func TestSealMatchesEncoding(t *testing.T) {
	tricky := `"id":"00000000000000000000000000" "prev_hash":"` + Genesis + `" </script> ü \u2028`
	r := &Record{
		Kind: "search", Tenant: "acme", Time: time.Date(2026, 11, 1, 10, 0, 0, 123456789, time.UTC),
		Principal: authz.Principal{Kind: authz.KindUser, Tenant: "acme", User: tricky},
		Query:     tricky,
		Results:   []Candidate{{TicketID: "T-1", Score: 0.1 + 0.2, Decision: Returned}, {TicketID: "T-2", Score: 1e-7, Decision: DeniedByCheck}},
		Latency:   map[string]int64{"id": 1, "prev_hash": 2, "zz": 3},
		Narrowing: Narrowing{IntentText: tricky},
	}
	if err := (Options{}).Prepare(r); err != nil {
		t.Fatal(err)
	}
	p, err := NewPending(r)
	if err != nil {
		t.Fatal(err)
	}
	var ids IDs
	id := ids.Next(time.Now(), "")
	prev := strings.Repeat("ab", 32)
	line := p.Seal(id, prev)

	want := *r
	want.ID, want.PrevHash, want.Hash = id, prev, p.Record.Hash
	b, err := json.Marshal(&want)
	if err != nil {
		t.Fatal(err)
	}
	if string(line) != string(b) {
		t.Fatalf("sealed line differs from json.Marshal:\n got %s\nwant %s", line, b)
	}
	h, err := HashOf(line)
	if err != nil || h != p.Record.Hash {
		t.Fatalf("HashOf(line) = %s, %v; sealed hash %s", h, err, p.Record.Hash)
	}
	if r.ID != "" || r.Hash != "" {
		t.Fatal("NewPending changed the caller's record")
	}
}

func TestIDsIncrease(t *testing.T) {
	var g IDs
	now := time.Now()
	prev := g.Next(now, "")
	for i := range 1000 {
		// Same millisecond, and a clock that goes backwards.
		at := now
		if i%3 == 0 {
			at = now.Add(-time.Second)
		}
		id := g.Next(at, "")
		if id <= prev || !ValidID(id) {
			t.Fatalf("id %s after %s", id, prev)
		}
		prev = id
	}
	// A floor from another writer ahead of us is respected.
	floor := (&IDs{}).Next(now.Add(time.Hour), "")
	if id := g.Next(now, floor); id <= floor {
		t.Fatalf("id %s not above the floor %s", id, floor)
	}
}

func TestPrepareRejectsNonFiniteScores(t *testing.T) {
	r := &Record{Kind: "search", Tenant: "acme", Results: []Candidate{{TicketID: "T-1"}, {TicketID: "T-2", Score: float32(math.Inf(1))}}}
	err := (Options{}).Prepare(r)
	if err == nil || !strings.Contains(err.Error(), "candidates[1].score") {
		t.Fatalf("prepare: %v, want a field error on candidates[1].score", err)
	}
}

func TestPrepareRejectsRedactedRecords(t *testing.T) {
	r := &Record{Kind: "search", Tenant: "acme", Redacted: 1}
	err := (Options{}).Prepare(r)
	if err == nil || !strings.Contains(err.Error(), "redacted") {
		t.Fatalf("prepare: %v, want a field error on redacted", err)
	}
}
