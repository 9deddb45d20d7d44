// Package audittest is the conformance suite every audit backend passes: chaining,
// durability across reopen, filters and paging, query hashing, concurrent group
// commit, detection of edited, deleted and reordered records, retention behind a
// signed checkpoint, and failing closed when the store is down.
//
//	func TestConformance(t *testing.T) {
//		audittest.Run(t, func(t *testing.T) audittest.Storage { return newStorage(t) })
//	}
package audittest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
)

// Backend is what the suite needs of an open log.
type Backend interface {
	audit.Log
	audit.Reader
	Prune(ctx context.Context, before time.Time) (*audit.Checkpoint, error)
	Close() error
}

// Options the suite opens a backend with.
type Options struct {
	HashQueries bool
	FailOpen    bool
	// SmallSegments asks file backends to start a new segment after every batch,
	// so retention has whole segments to prune.
	SmallSegments bool
}

// Storage is one empty log's storage, opened and reopened by the suite and
// tampered with while closed, the way an attacker with access to the files or
// the table would.
type Storage interface {
	// Open opens (or reopens) the log. The suite closes it.
	Open(t *testing.T, o Options) Backend
	// Edit replaces the stored bytes of the record at chain position pos.
	Edit(t *testing.T, pos int, edit func(raw string) string)
	// Delete removes the record at pos.
	Delete(t *testing.T, pos int)
	// Swap exchanges the places of the records at i and j.
	Swap(t *testing.T, i, j int)
	// EditCheckpoint changes the stored retention checkpoint.
	EditCheckpoint(t *testing.T, edit func(*audit.Checkpoint))
	// Break makes the open backend's store fail (close its file or pool).
	Break(t *testing.T, b Backend)
}

// Run runs every test of the suite; newStorage returns a fresh, empty storage.
func Run(t *testing.T, newStorage func(t *testing.T) Storage) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Storage)
	}{
		{"AppendChains", testAppendChains},
		{"InvalidWritesNothing", testInvalid},
		{"ConcurrentGroupCommit", testConcurrent},
		{"Filters", testFilters},
		{"Paging", testPaging},
		{"HashQueries", testHashQueries},
		{"TraceID", testTraceID},
		{"Reopen", testReopen},
		{"DetectEdited", testDetectEdited},
		{"DetectDeleted", testDetectDeleted},
		{"DetectSwapped", testDetectSwapped},
		{"DetectRewrittenWithNewHash", testDetectRewritten},
		{"RetentionCheckpoint", testRetention},
		{"FailClosed", testFailClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStorage(t)) })
	}
}

func open(t *testing.T, s Storage, o Options) Backend {
	t.Helper()
	b := s.Open(t, o)
	t.Cleanup(func() { b.Close() })
	return b
}

// Rec builds a search record with candidates for the given tickets (the first
// returned, the rest denied).
func Rec(tenant, user, agent string, tickets ...string) *audit.Record {
	p := authz.Principal{Kind: authz.KindUser, Tenant: tenant, User: user, AuthMethod: "jwt", Scopes: []string{"tickets:read"}}
	if agent != "" {
		p.Kind, p.Agent = authz.KindAgent, agent
	}
	r := &audit.Record{
		Kind: "search", Tenant: tenant, Principal: p, Query: "outage in " + tenant, TopK: 5,
		Plan:    audit.Plan{Path: "prefilter", AllowedProjects: 2, Rounds: 1, Fetched: len(tickets), Checked: len(tickets)},
		Status:  "complete",
		ModelID: "01MODEL", Consistency: "HIGHER_CONSISTENCY",
		Latency: map[string]int64{"embed": 120, "search": 800, "check": 2300},
	}
	for i, id := range tickets {
		d := audit.Returned
		if i > 0 {
			d = audit.DeniedByCheck
			r.Plan.Denied++
		}
		r.Results = append(r.Results, audit.Candidate{TicketID: id, Project: "p-" + id, Chunk: i, Score: 0.9 - float32(i)/10, Decision: d})
	}
	return r
}

func mustAppend(t *testing.T, b Backend, r *audit.Record) *audit.Record {
	t.Helper()
	if err := b.Append(context.Background(), r); err != nil {
		t.Fatalf("append: %v", err)
	}
	return r
}

func appendN(t *testing.T, b Backend, n int) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	for i := range n {
		out = append(out, mustAppend(t, b, Rec("acme", fmt.Sprintf("u%d", i), "", fmt.Sprintf("T-%d", i), "T-x")))
	}
	return out
}

func verify(t *testing.T, b Backend) audit.VerifyReport {
	t.Helper()
	rep, err := b.Verify(context.Background())
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

func wantOK(t *testing.T, rep audit.VerifyReport, records int64) {
	t.Helper()
	if !rep.OK() {
		t.Fatalf("verify found %v, want an intact chain", rep.Problem)
	}
	if rep.Records != records {
		t.Fatalf("verify checked %d records, want %d", rep.Records, records)
	}
}

func wantProblem(t *testing.T, rep audit.VerifyReport, kind audit.ProblemKind, pos int64, id string) {
	t.Helper()
	if rep.Problem == nil {
		t.Fatalf("verify found nothing, want %s at position %d (%s)", kind, pos, id)
	}
	p := *rep.Problem
	if p.Kind != kind || p.Position != pos || p.ID != id {
		t.Fatalf("verify found %v, want %s at position %d (id %s)", p, kind, pos, id)
	}
}

func testAppendChains(t *testing.T, s Storage) {
	b := open(t, s, Options{})
	recs := appendN(t, b, 5)
	for i, r := range recs {
		if !audit.ValidID(r.ID) {
			t.Fatalf("record %d: id %q is not a ULID", i, r.ID)
		}
		want := audit.Genesis
		if i > 0 {
			want = recs[i-1].Hash
			if r.ID <= recs[i-1].ID {
				t.Fatalf("ids not increasing: %s then %s", recs[i-1].ID, r.ID)
			}
		}
		if r.PrevHash != want || len(r.Hash) != 64 {
			t.Fatalf("record %d: prev_hash %q hash %q, want prev %q", i, r.PrevHash, r.Hash, want)
		}
		got, err := b.Get(context.Background(), r.ID)
		if err != nil {
			t.Fatalf("get %s: %v", r.ID, err)
		}
		if d := cmp.Diff(r, got); d != "" {
			t.Fatalf("get %s differs from what was appended (-appended +got):\n%s", r.ID, d)
		}
	}
	wantOK(t, verify(t, b), 5)
	if _, err := b.Get(context.Background(), "01ARZ3NDEKTSV4RRFFQ69G5FAV"); !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("get of an unknown id: %v, want ErrNotFound", err)
	}
	if _, err := b.Get(context.Background(), "not-an-id"); !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("get of a malformed id: %v, want ErrNotFound", err)
	}
}

func testInvalid(t *testing.T, s Storage) {
	b := open(t, s, Options{})
	appendN(t, b, 1)
	bad := []*audit.Record{
		{Kind: "search"},
		{Tenant: "acme"},
		func() *audit.Record { r := Rec("acme", "u", ""); r.ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"; return r }(),
		func() *audit.Record { r := Rec("acme", "u", ""); r.TraceID = "not-a-trace-id"; return r }(),
	}
	for i, r := range bad {
		err := b.Append(context.Background(), r)
		var fe *clearance.FieldError
		if !errors.As(err, &fe) || !errors.Is(err, clearance.ErrInvalid) {
			t.Fatalf("bad record %d: %v, want a FieldError", i, err)
		}
	}
	wantOK(t, verify(t, b), 1)
}

func testConcurrent(t *testing.T, s Storage) {
	b := open(t, s, Options{})
	const workers, each = 32, 8
	var wg sync.WaitGroup
	ids := make(chan string, workers*each)
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := Rec("acme", fmt.Sprintf("w%d", w), "", fmt.Sprintf("T-%d-%d", w, i))
				if err := b.Append(context.Background(), r); err != nil {
					errs <- err
					return
				}
				ids <- r.ID
			}
		})
	}
	wg.Wait()
	close(ids)
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("id %s handed out twice", id)
		}
		seen[id] = true
	}
	rep := verify(t, b)
	wantOK(t, rep, workers*each)
	page, err := b.List(context.Background(), audit.Filter{Limit: audit.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != workers*each || page.Records[0].ID != rep.LastID {
		t.Fatalf("list has %d records (newest %s), want %d (newest %s)", len(page.Records), page.Records[0].ID, workers*each, rep.LastID)
	}
}

func ids(rs []audit.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func testFilters(t *testing.T, s Storage) {
	b := open(t, s, Options{})
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	type spec struct{ tenant, user, agent, ticket string }
	specs := []spec{
		{"acme", "anne", "", "T-1"},
		{"acme", "anne", "copilot", "T-2"},
		{"acme", "bob", "copilot", "T-1"},
		{"globex", "gina", "", "T-9"},
		{"globex", "anne", "", "T-1"},
		{"acme", "carl", "", "T-3"},
	}
	var all []*audit.Record
	for i, sp := range specs {
		r := Rec(sp.tenant, sp.user, sp.agent, sp.ticket, "T-other")
		r.Time = base.Add(time.Duration(i) * time.Minute)
		all = append(all, mustAppend(t, b, r))
	}
	// Expected answers are written out by hand: newest first, by index in specs.
	cases := []struct {
		name string
		f    audit.Filter
		want []int
	}{
		{"all", audit.Filter{}, []int{5, 4, 3, 2, 1, 0}},
		{"tenant", audit.Filter{Tenant: "acme"}, []int{5, 2, 1, 0}},
		{"principal", audit.Filter{Principal: "anne"}, []int{4, 1, 0}},
		{"tenant+principal", audit.Filter{Tenant: "acme", Principal: "anne"}, []int{1, 0}},
		{"agent", audit.Filter{Agent: "copilot"}, []int{2, 1}},
		{"ticket", audit.Filter{Ticket: "T-1"}, []int{4, 2, 0}},
		{"denied ticket", audit.Filter{Ticket: "T-other", Tenant: "globex"}, []int{4, 3}},
		{"since", audit.Filter{Since: base.Add(3 * time.Minute)}, []int{5, 4, 3}},
		{"until", audit.Filter{Until: base.Add(2 * time.Minute)}, []int{1, 0}},
		{"window", audit.Filter{Since: base.Add(time.Minute), Until: base.Add(4 * time.Minute)}, []int{3, 2, 1}},
		{"nothing", audit.Filter{Tenant: "initech"}, nil},
		{"after", audit.Filter{After: all[2].ID}, []int{3, 4, 5}},
		{"after+tenant", audit.Filter{After: all[0].ID, Tenant: "acme"}, []int{1, 2, 5}},
	}
	for _, tc := range cases {
		page, err := b.List(context.Background(), tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var want []string
		for _, i := range tc.want {
			want = append(want, all[i].ID)
		}
		if d := cmp.Diff(want, ids(page.Records)); d != "" {
			t.Errorf("%s: (-want +got)\n%s", tc.name, d)
		}
	}
	for _, f := range []audit.Filter{{Limit: -1}, {Limit: audit.MaxListLimit + 1}, {Cursor: "x"}, {Cursor: all[1].ID, After: all[0].ID},
		{Since: base, Until: base}} {
		if _, err := b.List(context.Background(), f); !errors.Is(err, clearance.ErrInvalid) {
			t.Errorf("list %+v: %v, want ErrInvalid", f, err)
		}
	}
}

func testPaging(t *testing.T, s Storage) {
	b := open(t, s, Options{})
	recs := appendN(t, b, 11)
	var got []string
	f := audit.Filter{Limit: 3}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page, err := b.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(page.Records)...)
		if page.Next == "" {
			break
		}
		f.Cursor = page.Next
	}
	var want []string
	for i := len(recs) - 1; i >= 0; i-- {
		want = append(want, recs[i].ID)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("pages newest first (-want +got)\n%s", d)
	}
	// Tail: After follows oldest first and hands back where to continue.
	page, err := b.List(context.Background(), audit.Filter{After: recs[8].ID, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{recs[9].ID, recs[10].ID}, ids(page.Records)); d != "" || page.Next != recs[10].ID {
		t.Fatalf("after: next %q (-want +got)\n%s", page.Next, d)
	}
	newer := mustAppend(t, b, Rec("acme", "late", "", "T-late"))
	page, err = b.List(context.Background(), audit.Filter{After: page.Next})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{newer.ID}, ids(page.Records)); d != "" {
		t.Fatalf("after, following: (-want +got)\n%s", d)
	}
}

func testHashQueries(t *testing.T, s Storage) {
	b := open(t, s, Options{HashQueries: true})
	r := Rec("acme", "anne", "", "T-1")
	text := r.Query
	mustAppend(t, b, r)
	got, err := b.Get(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(text))
	if got.Query != "" || got.QueryHash != hex.EncodeToString(sum[:]) {
		t.Fatalf("stored query %q hash %q, want no text and sha256 of it", got.Query, got.QueryHash)
	}
}

// testTraceID: a record's trace id is stored, read back and hashed with the
// rest (editing it breaks the chain), and records without one encode as before
// (no trace_id key), so older chains keep verifying.
func testTraceID(t *testing.T, s Storage) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	b := s.Open(t, Options{})
	plain := mustAppend(t, b, Rec("acme", "anne", "", "T-1"))
	r := Rec("acme", "anne", "", "T-2")
	r.TraceID = id
	traced := mustAppend(t, b, r)
	got, err := b.Get(context.Background(), traced.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.TraceID != id || got.Hash != traced.Hash {
		t.Fatalf("read back trace_id %q hash %s, want %s %s", got.TraceID, got.Hash, id, traced.Hash)
	}
	old, err := b.Get(context.Background(), plain.ID)
	if err != nil {
		t.Fatal(err)
	}
	if old.TraceID != "" {
		t.Fatalf("untraced record got trace_id %q", old.TraceID)
	}
	wantOK(t, verify(t, b), 2)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The trace id is inside the hash: editing it is detected like any field.
	s.Edit(t, 1, func(raw string) string {
		out := strings.Replace(raw, id, "0af7651916cd43dd8448eb211c80319c", 1)
		if out == raw {
			t.Fatal("tamper: nothing to edit")
		}
		return out
	})
	wantProblem(t, verify(t, open(t, s, Options{})), audit.Edited, 1, traced.ID)
}

func testReopen(t *testing.T, s Storage) {
	b := s.Open(t, Options{})
	first := appendN(t, b, 3)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = open(t, s, Options{})
	more := appendN(t, b, 2)
	if more[0].PrevHash != first[2].Hash {
		t.Fatalf("after reopen the chain restarted: prev %q, want %q", more[0].PrevHash, first[2].Hash)
	}
	if more[0].ID <= first[2].ID {
		t.Fatalf("after reopen ids went backwards: %s after %s", more[0].ID, first[2].ID)
	}
	rep := verify(t, b)
	wantOK(t, rep, 5)
	if rep.FirstID != first[0].ID || rep.LastID != more[1].ID || rep.HeadHash != more[1].Hash {
		t.Fatalf("report %+v, want first %s last %s", rep, first[0].ID, more[1].ID)
	}
}

// tamperSetup appends n records and closes the log, ready to be tampered with.
func tamperSetup(t *testing.T, s Storage, n int) []*audit.Record {
	t.Helper()
	b := s.Open(t, Options{})
	recs := appendN(t, b, n)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return recs
}

func testDetectEdited(t *testing.T, s Storage) {
	recs := tamperSetup(t, s, 6)
	s.Edit(t, 2, func(raw string) string {
		out := strings.Replace(raw, `"decision":"denied_by_check"`, `"decision":"returned"`, 1)
		if out == raw {
			t.Fatal("tamper: nothing to edit")
		}
		return out
	})
	wantProblem(t, verify(t, open(t, s, Options{})), audit.Edited, 2, recs[2].ID)
}

func testDetectDeleted(t *testing.T, s Storage) {
	recs := tamperSetup(t, s, 6)
	s.Delete(t, 3)
	// Record 4 now sits at position 3 and links to the deleted one.
	wantProblem(t, verify(t, open(t, s, Options{})), audit.Removed, 3, recs[4].ID)
}

func testDetectSwapped(t *testing.T, s Storage) {
	recs := tamperSetup(t, s, 6)
	s.Swap(t, 2, 3)
	wantProblem(t, verify(t, open(t, s, Options{})), audit.Reordered, 2, recs[3].ID)
}

// testDetectRewritten: an attacker who edits a record and recomputes its hash
// breaks the link of the next record.
func testDetectRewritten(t *testing.T, s Storage) {
	recs := tamperSetup(t, s, 5)
	s.Edit(t, 1, func(raw string) string {
		r := strings.Replace(raw, `"tenant":"acme"`, `"tenant":"acmf"`, 1)
		h, err := audit.HashOf([]byte(r))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Replace(r, recs[1].Hash, h, 1)
	})
	wantProblem(t, verify(t, open(t, s, Options{})), audit.Removed, 2, recs[2].ID)
}

func testRetention(t *testing.T, s Storage) {
	b := s.Open(t, Options{SmallSegments: true})
	now := time.Now().UTC()
	var old []*audit.Record
	for i := range 4 {
		r := Rec("acme", "old", "", fmt.Sprintf("T-%d", i))
		r.Time = now.Add(-72*time.Hour + time.Duration(i)*time.Minute)
		old = append(old, mustAppend(t, b, r))
	}
	fresh := appendN(t, b, 3)
	cp, err := b.Prune(context.Background(), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	if cp == nil || cp.ID != old[3].ID || cp.Hash != old[3].Hash || cp.Records != 4 {
		t.Fatalf("checkpoint %+v, want the last old record %s and 4 records pruned", cp, old[3].ID)
	}
	rep := verify(t, b)
	wantOK(t, rep, 3)
	if rep.Checkpoint == nil || rep.FirstID != fresh[0].ID {
		t.Fatalf("report %+v, want it to start at the checkpoint and %s", rep, fresh[0].ID)
	}
	page, err := b.List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 3 {
		t.Fatalf("list after prune has %d records, want 3", len(page.Records))
	}
	if _, err := b.Get(context.Background(), old[0].ID); !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("pruned record: %v, want ErrNotFound", err)
	}
	// Pruning again finds nothing older.
	if cp, err := b.Prune(context.Background(), now.Add(-24*time.Hour)); err != nil || cp != nil {
		t.Fatalf("second prune: %+v, %v; want nothing", cp, err)
	}
	mustAppend(t, b, Rec("acme", "after", "", "T-after"))
	wantOK(t, verify(t, b), 4)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// A deleted kept record right after the checkpoint is still found.
	s.Delete(t, 4)
	b = s.Open(t, Options{})
	wantProblem(t, verify(t, b), audit.Removed, 4, fresh[1].ID)
	b.Close()

	// A forged checkpoint (moved to hide more) fails its signature.
	s.EditCheckpoint(t, func(c *audit.Checkpoint) { c.Records = 5 })
	rep = verify(t, open(t, s, Options{}))
	if rep.Problem == nil || rep.Problem.Kind != audit.BadCheckpoint {
		t.Fatalf("forged checkpoint: %+v, want %s", rep.Problem, audit.BadCheckpoint)
	}
}

func testFailClosed(t *testing.T, s Storage) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail_open=%v", failOpen), func(t *testing.T) {
			b := open(t, s, Options{FailOpen: failOpen})
			appendN(t, b, 1)
			s.Break(t, b)
			err := b.Append(context.Background(), Rec("acme", "anne", "", "T-1"))
			switch {
			case failOpen && err != nil:
				t.Fatalf("fail-open append: %v, want nil (record dropped and logged)", err)
			case !failOpen && !errors.Is(err, clearance.ErrUnavailable):
				t.Fatalf("append to a broken store: %v, want ErrUnavailable", err)
			}
		})
	}
}
