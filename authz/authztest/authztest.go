// Package authztest is the conformance suite every authz.Engine backend passes:
// the demo org's assertions (testdata/org.fga.yaml), delegation through the
// contextual active tuple, expiring grants, blocks over admins, complete listings
// beyond OpenFGA's default caps (objects and users), large ordered batch checks, revocation with higher
// consistency, refused writes, and failing closed when the engine is down.
//
//	func TestConformance(t *testing.T) {
//		authztest.Run(t, authztest.Backend{New: newEngine, Break: stopServer})
//	}
package authztest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/fgafile"
)

// Backend is what the suite needs of an engine implementation.
type Backend struct {
	// New returns an engine over a new, empty store with authz.ModelDSL. The suite
	// closes it (closing twice must be harmless).
	New func(t *testing.T) authz.Engine
	// Break makes e unable to answer: stop its server, close its listener or its
	// datastore. Nil skips the fault test (say why in the caller).
	Break func(t *testing.T, e authz.Engine)
	// LargeListing is the number of objects the complete-listing test expects
	// (default 5,200: more than OpenFGA's default cap of 1,000 and its 3 s deadline
	// on slow datastores).
	LargeListing int
}

// OrgFile is the path of the demo org store file.
func OrgFile() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "org.fga.yaml")
}

// LoadOrg writes the demo org's tuples into e and returns the file.
func LoadOrg(t testing.TB, e authz.Engine) *fgafile.File {
	t.Helper()
	f, err := fgafile.Load(OrgFile())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.WriteTuples(context.Background(), e, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

// Run runs the conformance suite.
func Run(t *testing.T, b Backend) {
	if b.LargeListing == 0 {
		b.LargeListing = 5200
	}
	newEngine := func(t *testing.T) authz.Engine {
		t.Helper()
		e := b.New(t)
		t.Cleanup(func() { _ = e.Close() })
		if e.ModelID() == "" {
			t.Fatal("engine has no model id")
		}
		return e
	}
	t.Run("OrgFile", func(t *testing.T) { testOrgFile(t, newEngine(t)) })
	t.Run("ContextualDelegation", func(t *testing.T) { testDelegation(t, newEngine(t)) })
	t.Run("ExpiringGrant", func(t *testing.T) { testExpiry(t, newEngine(t)) })
	t.Run("BlockedOverridesAdmin", func(t *testing.T) { testBlocked(t, newEngine(t)) })
	t.Run("ListObjectsComplete", func(t *testing.T) { testLargeListing(t, newEngine(t), b.LargeListing) })
	t.Run("BatchCheckOrder", func(t *testing.T) { testBatch(t, newEngine(t)) })
	t.Run("Revocation", func(t *testing.T) { testRevocation(t, newEngine(t)) })
	t.Run("InvalidTuple", func(t *testing.T) { testInvalid(t, newEngine(t)) })
	t.Run("WriteIdempotentAndRead", func(t *testing.T) { testWriteRead(t, newEngine(t)) })
	t.Run("ListUsers", func(t *testing.T) { testListUsers(t, newEngine(t)) })
	t.Run("Unavailable", func(t *testing.T) {
		if b.Break == nil {
			t.Skip("backend has no fault injection")
		}
		testUnavailable(t, newEngine(t), b.Break)
	})
}

var ctx = context.Background()

// Collect drains a listing; any error is returned with the ids seen so far.
func Collect(seq iter.Seq2[string, error]) ([]string, error) {
	var out []string
	for id, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, id)
	}
	return out, nil
}

func write(t *testing.T, e authz.Engine, writes, deletes []authz.Tuple) {
	t.Helper()
	if err := e.Write(ctx, writes, deletes); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func check(t *testing.T, e authz.Engine, q authz.Query, user, rel, obj string) bool {
	t.Helper()
	ok, err := e.Check(ctx, q, authz.Check{User: user, Relation: rel, Object: obj})
	if err != nil {
		t.Fatalf("check %s#%s@%s: %v", obj, rel, user, err)
	}
	return ok
}

func list(t *testing.T, e authz.Engine, q authz.Query, user, rel, typ string) []string {
	t.Helper()
	ids, err := Collect(e.ListObjects(ctx, q, user, rel, typ))
	if err != nil {
		t.Fatalf("list %s %s for %s: %v", typ, rel, user, err)
	}
	slices.Sort(ids)
	if ids == nil {
		ids = []string{}
	}
	return ids
}

func tuple(user, rel, obj string) authz.Tuple {
	return authz.Tuple{User: user, Relation: rel, Object: obj}
}

// testOrgFile runs every assertion of the demo org. Each test's tuples are sent as
// contextual tuples, never stored. Checks go through Check and, all at once, through
// BatchCheck; listings through ListObjects.
func testOrgFile(t *testing.T, e authz.Engine) {
	f := LoadOrg(t, e)
	n := 0
	for _, tc := range f.Tests {
		t.Run(tc.Name, func(t *testing.T) {
			for _, cc := range tc.Check {
				q := authz.Query{ContextualTuples: tc.Tuples, Context: cc.Context}
				var checks []authz.Check
				var want []bool
				for _, u := range cc.Users {
					for _, o := range cc.Objects {
						for rel, exp := range cc.Assertions {
							checks = append(checks, authz.Check{User: u, Relation: rel, Object: o})
							want = append(want, exp)
							if got := check(t, e, q, u, rel, o); got != exp {
								t.Errorf("check %s#%s@%s (context %v) = %v, want %v", o, rel, u, cc.Context, got, exp)
							}
							n++
						}
					}
				}
				got, err := e.BatchCheck(ctx, q, checks)
				if err != nil {
					t.Fatalf("batch check: %v", err)
				}
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("batch check differs from assertions (-want +got):\n%s", d)
				}
			}
			for _, lc := range tc.ListObjects {
				q := authz.Query{ContextualTuples: tc.Tuples, Context: lc.Context}
				for rel, objs := range lc.Assertions {
					want := make([]string, 0, len(objs))
					for _, o := range objs {
						want = append(want, strings.TrimPrefix(o, lc.Type+":"))
					}
					slices.Sort(want)
					got := list(t, e, q, lc.User, rel, lc.Type)
					if d := cmp.Diff(want, got); d != "" {
						t.Errorf("list %s %s for %s (context %v) (-want +got):\n%s", lc.Type, rel, lc.User, lc.Context, d)
					}
					n++
				}
			}
		})
	}
	if n < 40 {
		t.Errorf("only %d assertions ran", n)
	}
	// The contextual tuples of the agent tests were never stored.
	for _, tc := range f.Tests {
		for _, ct := range tc.Tuples {
			for tp, err := range e.Read(ctx, authz.TupleFilter{User: ct.User, Relation: ct.Relation, Object: ct.Object}) {
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				t.Errorf("contextual tuple %s was stored", tp)
			}
		}
	}
}

// testDelegation: the agent sees the intersection of the user's access and the
// grant, and only with the contextual active tuple the server adds.
func testDelegation(t *testing.T, e authz.Engine) {
	write(t, e, []authz.Tuple{
		tuple("tenant:t1", "tenant", "project:p1"),
		tuple("tenant:t1", "tenant", "project:p2"),
		tuple("tenant:t1", "tenant", "project:p3"),
		tuple("user:u", "owner", "project:p1"),
		tuple("user:u", "member", "project:p2"),
		tuple("project:p1", "project", "ticket:t-1"),
		tuple("project:p2", "project", "ticket:t-2"),
		tuple("project:p3", "project", "ticket:t-3"),
		tuple("user:u", "delegator", "delegation:u~bot"),
		tuple("agent:bot", "agent", "delegation:u~bot"),
		tuple("delegation:u~bot", "granted", "project:p1"),
		tuple("delegation:u~bot", "granted", "project:p3"), // u cannot view p3 itself
	}, nil)
	agent := authz.Principal{Kind: authz.KindAgent, Tenant: "t1", User: "u", Agent: "bot"}
	with := authz.Query{ContextualTuples: agent.ContextualTuples()}
	if got := list(t, e, with, agent.Subject(), agent.ViewRelation(), "project"); !slices.Equal(got, []string{"p1"}) {
		t.Errorf("agent projects = %v, want [p1] (user's access ∩ grant)", got)
	}
	if got := list(t, e, with, agent.Subject(), agent.ViewRelation(), "ticket"); !slices.Equal(got, []string{"t-1"}) {
		t.Errorf("agent tickets = %v, want [t-1]", got)
	}
	user := authz.Principal{Kind: authz.KindUser, Tenant: "t1", User: "u"}
	if got := list(t, e, authz.Query{}, user.Subject(), user.ViewRelation(), "project"); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Errorf("user projects = %v, want [p1 p2]", got)
	}
	without := authz.Query{}
	if got := list(t, e, without, agent.Subject(), agent.ViewRelation(), "project"); len(got) != 0 {
		t.Errorf("agent without its contextual tuple sees %v, want nothing", got)
	}
	if check(t, e, without, "user:u", authz.RelationAgentCanView, "ticket:t-1") {
		t.Error("agent without its contextual tuple can view t-1")
	}
	// Another user's session tuple for u's delegation lends nothing.
	write(t, e, []authz.Tuple{tuple("user:v", "owner", "project:p1")}, nil)
	other := authz.Query{ContextualTuples: []authz.Tuple{tuple("user:v", "active", "delegation:u~bot")}}
	if check(t, e, other, "user:v", authz.RelationAgentCanView, "project:p1") {
		t.Error("user v used u's grant through a mis-derived active tuple")
	}
}

// testExpiry: a conditioned grant is valid before expires_at and not after; the
// engine adds current_time from Query.Now (or the wall clock) itself.
func testExpiry(t *testing.T, e authz.Engine) {
	expires := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	write(t, e, []authz.Tuple{
		tuple("user:u", "owner", "project:p"),
		tuple("project:p", "project", "ticket:x"),
		tuple("user:u", "delegator", "delegation:u~bot"),
		{User: "delegation:u~bot", Relation: "granted", Object: "project:p",
			Condition: &authz.Condition{Name: "not_expired", Context: map[string]any{"expires_at": expires.Format(time.RFC3339)}}},
	}, nil)
	session := []authz.Tuple{tuple("user:u", "active", "delegation:u~bot")}
	for _, tc := range []struct {
		name string
		q    authz.Query
		want bool
	}{
		{"wall clock (before expiry)", authz.Query{}, true},
		{"Now before expiry", authz.Query{Now: expires.Add(-time.Hour)}, true},
		{"Now after expiry", authz.Query{Now: expires.Add(time.Second)}, false},
		{"explicit current_time after expiry", authz.Query{Context: map[string]any{"current_time": "2031-01-01T00:00:00Z"}}, false},
		{"explicit current_time wins over Now", authz.Query{Now: expires.Add(-time.Hour), Context: map[string]any{"current_time": "2031-01-01T00:00:00Z"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.ContextualTuples = session
			for _, obj := range []string{"project:p", "ticket:x"} {
				if got := check(t, e, q, "user:u", authz.RelationAgentCanView, obj); got != tc.want {
					t.Errorf("check %s = %v, want %v", obj, got, tc.want)
				}
			}
			got, err := e.BatchCheck(ctx, q, []authz.Check{{User: "user:u", Relation: authz.RelationAgentCanView, Object: "ticket:x"}})
			if err != nil || got[0] != tc.want {
				t.Errorf("batch check = %v, %v; want %v", got, err, tc.want)
			}
			ids := list(t, e, q, "user:u", authz.RelationAgentCanView, "ticket")
			if (len(ids) == 1) != tc.want {
				t.Errorf("list = %v, want visible=%v", ids, tc.want)
			}
			// The user's own access does not expire.
			if !check(t, e, q, "user:u", authz.RelationCanView, "ticket:x") {
				t.Error("user lost own access")
			}
		})
	}
}

func testBlocked(t *testing.T, e authz.Engine) {
	write(t, e, []authz.Tuple{
		tuple("user:admin", "admin", "tenant:t1"),
		tuple("tenant:t1", "tenant", "project:p"),
		tuple("project:p", "project", "ticket:a"),
		tuple("project:p", "project", "ticket:b"),
	}, nil)
	hc := authz.Query{Consistency: authz.HigherConsistency}
	if !check(t, e, hc, "user:admin", authz.RelationCanView, "ticket:a") {
		t.Fatal("tenant admin cannot view a ticket of the tenant")
	}
	write(t, e, []authz.Tuple{tuple("user:admin", "blocked", "ticket:a")}, nil)
	if check(t, e, hc, "user:admin", authz.RelationCanView, "ticket:a") {
		t.Error("blocked tenant admin can still view the ticket")
	}
	if check(t, e, hc, "user:admin", "can_edit", "ticket:a") {
		t.Error("blocked tenant admin can still edit the ticket")
	}
	if got := list(t, e, hc, "user:admin", authz.RelationCanView, "ticket"); !slices.Equal(got, []string{"b"}) {
		t.Errorf("admin lists %v, want [b]", got)
	}
}

// testLargeListing: far beyond OpenFGA's default 1,000-result cap, the listing is
// complete; stopping early is allowed and leaves the engine usable.
func testLargeListing(t *testing.T, e authz.Engine, n int) {
	ts := []authz.Tuple{tuple("user:u", "member", "project:big"), tuple("tenant:t", "tenant", "project:big")}
	want := make([]string, 0, n)
	for i := range n {
		id := fmt.Sprintf("big-%05d", i)
		want = append(want, id)
		ts = append(ts, tuple("project:big", "project", "ticket:"+id))
	}
	for part := range slices.Chunk(ts, 1000) {
		write(t, e, part, nil)
	}
	got := list(t, e, authz.Query{}, "user:u", authz.RelationCanView, "ticket")
	if len(got) != n {
		t.Fatalf("listed %d tickets, want %d", len(got), n)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("listing differs (-want +got):\n%s", d)
	}
	seen := 0
	for _, err := range e.ListObjects(ctx, authz.Query{}, "user:u", authz.RelationCanView, "ticket") {
		if err != nil {
			t.Fatal(err)
		}
		if seen++; seen == 10 {
			break
		}
	}
	if !check(t, e, authz.Query{}, "user:u", authz.RelationCanView, "ticket:big-00001") {
		t.Error("engine unusable after an abandoned listing")
	}
	// A caller context that ends during the listing is a cut-off, never a short
	// complete list.
	cctx, cancel := context.WithCancel(ctx)
	var cut error
	count := 0
	for _, err := range e.ListObjects(cctx, authz.Query{}, "user:u", authz.RelationCanView, "ticket") {
		if err != nil {
			cut = err
			break
		}
		if count++; count == 5 {
			cancel()
		}
	}
	cancel()
	if cut == nil && count < n {
		t.Errorf("listing ended after %d of %d objects without an error", count, n)
	}
	if cut != nil && !errors.Is(cut, authz.ErrTruncated) && !errors.Is(cut, authz.ErrUnavailable) {
		t.Errorf("cut-off error %v wraps neither ErrTruncated nor ErrUnavailable", cut)
	}
}

// testBatch: 500 checks (ten chunks of the default 50) come back in order.
func testBatch(t *testing.T, e authz.Engine) {
	const n = 500
	var ts []authz.Tuple
	for i := range n {
		obj := fmt.Sprintf("ticket:b-%03d", i)
		ts = append(ts, tuple("project:p", "project", obj))
		if i%3 == 0 || i%7 == 0 {
			ts = append(ts, tuple("user:u", "viewer", obj))
		}
	}
	write(t, e, ts, nil)
	order := rand.Perm(n)
	checks := make([]authz.Check, n)
	want := make([]bool, n)
	for k, i := range order {
		checks[k] = authz.Check{User: "user:u", Relation: authz.RelationCanView, Object: fmt.Sprintf("ticket:b-%03d", i)}
		want[k] = i%3 == 0 || i%7 == 0
	}
	got, err := e.BatchCheck(ctx, authz.Query{Consistency: authz.HigherConsistency}, checks)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("batch check out of order or wrong (-want +got):\n%s", d)
	}
	if got, err := e.BatchCheck(ctx, authz.Query{}, nil); err != nil || len(got) != 0 {
		t.Errorf("empty batch = %v, %v", got, err)
	}

	// One item the engine cannot evaluate (a conditioned grant with an unusable
	// current_time) fails the whole batch, never a partial or a true.
	write(t, e, []authz.Tuple{
		tuple("user:u", "owner", "project:p"),
		tuple("user:u", "delegator", "delegation:u~bot"),
		{User: "delegation:u~bot", Relation: "granted", Object: "project:p",
			Condition: &authz.Condition{Name: "not_expired", Context: map[string]any{"expires_at": "2030-01-01T00:00:00Z"}}},
	}, nil)
	bad := authz.Query{
		ContextualTuples: []authz.Tuple{tuple("user:u", "active", "delegation:u~bot")},
		Context:          map[string]any{"current_time": "not a time"},
	}
	mixed := append([]authz.Check{{User: "user:u", Relation: authz.RelationAgentCanView, Object: "project:p"}}, checks[:120]...)
	if got, err := e.BatchCheck(ctx, bad, mixed); got != nil || !errors.Is(err, authz.ErrUnavailable) {
		t.Errorf("batch with a failing item = %v, %v; want nil and ErrUnavailable", got != nil, err)
	}
	if ok, err := e.Check(ctx, bad, mixed[0]); ok || err == nil {
		t.Errorf("check that cannot be evaluated = %v, %v; want an error", ok, err)
	}
}

// testRevocation: a deleted tuple stops granting on the very next call with higher
// consistency, on every read path.
func testRevocation(t *testing.T, e authz.Engine) {
	grant := tuple("user:u", "viewer", "ticket:r")
	write(t, e, []authz.Tuple{tuple("project:p", "project", "ticket:r"), grant}, nil)
	hc := authz.Query{Consistency: authz.HigherConsistency}
	// Warm whatever caches exist with low-latency reads first.
	for range 3 {
		if !check(t, e, authz.Query{}, "user:u", authz.RelationCanView, "ticket:r") {
			t.Fatal("viewer cannot view")
		}
	}
	var rev authz.Revision
	r, revisioned := e.(authz.Revisioned)
	if revisioned {
		rev = revision(t, r)
		// Without a write the key holds, or caches keyed by it would never hit.
		if again := revision(t, r); again != rev {
			t.Errorf("revision moved without a write: %v then %v", rev, again)
		}
	}
	write(t, e, nil, []authz.Tuple{grant})
	if revisioned && revision(t, r) == rev {
		t.Error("revision unchanged after a write")
	}
	if check(t, e, hc, "user:u", authz.RelationCanView, "ticket:r") {
		t.Error("revoked viewer still passes Check")
	}
	got, err := e.BatchCheck(ctx, hc, []authz.Check{{User: "user:u", Relation: authz.RelationCanView, Object: "ticket:r"}})
	if err != nil || got[0] {
		t.Errorf("revoked viewer: batch check = %v, %v", got, err)
	}
	if ids := list(t, e, hc, "user:u", authz.RelationShared, "ticket"); len(ids) != 0 {
		t.Errorf("revoked viewer still lists %v", ids)
	}
}

// testInvalid: tuples that do not fit the model fail the whole write with
// ErrInvalidTuple and write nothing, even in a call larger than one transaction.
func testInvalid(t *testing.T, e authz.Engine) {
	valid := tuple("user:u", "viewer", "ticket:ok")
	bad := map[string]authz.Tuple{
		"unknown type":             tuple("user:u", "viewer", "folder:x"),
		"unknown relation":         tuple("user:u", "reader", "ticket:x"),
		"computed relation":        tuple("user:u", "can_view", "ticket:x"),
		"wrong user type":          tuple("agent:a", "viewer", "ticket:x"),
		"userset not allowed":      tuple("project:p#member", "viewer", "ticket:x"),
		"malformed object":         tuple("user:u", "viewer", "ticket"),
		"malformed user":           tuple("anne", "viewer", "ticket:x"),
		"condition not in model":   {User: "delegation:u~a", Relation: "granted", Object: "project:p", Condition: &authz.Condition{Name: "nope"}},
		"condition on plain rel":   {User: "user:u", Relation: "viewer", Object: "ticket:x", Condition: &authz.Condition{Name: "not_expired"}},
		"unknown condition param":  {User: "delegation:u~a", Relation: "granted", Object: "project:p", Condition: &authz.Condition{Name: "not_expired", Context: map[string]any{"until": "2030-01-01T00:00:00Z"}}},
		"condition param type":     {User: "delegation:u~a", Relation: "granted", Object: "project:p", Condition: &authz.Condition{Name: "not_expired", Context: map[string]any{"expires_at": "next tuesday"}}},
		"stored active tuple":      tuple("user:u", "active", "delegation:u~a"),
		"stored active (own user)": tuple("user:anne", "active", "delegation:anne~copilot"),
	}
	filler := make([]authz.Tuple, 0, 250)
	for i := range 250 {
		filler = append(filler, tuple("project:p", "project", fmt.Sprintf("ticket:f-%d", i)))
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			// The bad tuple comes last, after more tuples than one remote write takes.
			writes := append(append([]authz.Tuple{valid}, filler...), b)
			err := e.Write(ctx, writes, nil)
			if !errors.Is(err, authz.ErrInvalidTuple) || !errors.Is(err, clearance.ErrInvalid) {
				t.Fatalf("write %s: error %v, want ErrInvalidTuple", b, err)
			}
			if !strings.Contains(err.Error(), b.Object) && !strings.Contains(err.Error(), b.User) {
				t.Errorf("error %q does not name the tuple", err)
			}
		})
	}
	for _, obj := range []string{"ticket:ok", "ticket:f-0", "ticket:f-249"} {
		for tp, err := range e.Read(ctx, authz.TupleFilter{Object: obj}) {
			if err != nil {
				t.Fatal(err)
			}
			t.Errorf("refused write stored %s", tp)
		}
	}
	// Invalid contextual tuples fail the query; they never allow.
	q := authz.Query{ContextualTuples: []authz.Tuple{tuple("user:u", "reader", "ticket:ok")}}
	if ok, err := e.Check(ctx, q, authz.Check{User: "user:u", Relation: authz.RelationCanView, Object: "ticket:ok"}); err == nil || ok {
		t.Errorf("check with invalid contextual tuple = %v, %v; want error", ok, err)
	}
	if _, err := Collect(e.ListObjects(ctx, q, "user:u", authz.RelationCanView, "ticket")); err == nil {
		t.Error("list with invalid contextual tuple gave no error")
	}
	// Questions the model cannot answer are invalid input, not a deny and not an
	// outage.
	if ok, err := e.Check(ctx, authz.Query{}, authz.Check{User: "user:u", Relation: "nope", Object: "ticket:ok"}); ok || !errors.Is(err, clearance.ErrInvalid) {
		t.Errorf("check of an unknown relation = %v, %v; want ErrInvalid", ok, err)
	}
	if _, err := Collect(e.ListObjects(ctx, authz.Query{}, "user:u", authz.RelationCanView, "folder")); !errors.Is(err, clearance.ErrInvalid) {
		t.Errorf("list of an unknown type: %v, want ErrInvalid", err)
	}
	// The active tuple is fine as a contextual tuple.
	q = authz.Query{ContextualTuples: []authz.Tuple{tuple("user:u", "active", "delegation:u~a")}}
	if _, err := e.Check(ctx, q, authz.Check{User: "user:u", Relation: authz.RelationAgentCanView, Object: "ticket:ok"}); err != nil {
		t.Errorf("contextual active tuple refused: %v", err)
	}
}

// testWriteRead: writing an existing tuple and deleting a missing one are no-ops;
// Read returns stored tuples with their conditions.
func testWriteRead(t *testing.T, e authz.Engine) {
	grant := authz.Tuple{User: "delegation:u~a", Relation: "granted", Object: "project:p",
		Condition: &authz.Condition{Name: "not_expired", Context: map[string]any{"expires_at": "2030-01-01T00:00:00Z"}}}
	ts := []authz.Tuple{tuple("user:u", "delegator", "delegation:u~a"), grant}
	write(t, e, ts, nil)
	write(t, e, ts, nil)
	write(t, e, nil, []authz.Tuple{tuple("user:nobody", "viewer", "ticket:none")})
	var got []authz.Tuple
	for tp, err := range e.Read(ctx, authz.TupleFilter{Object: "project:p"}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tp)
	}
	if d := cmp.Diff([]authz.Tuple{grant}, got); d != "" {
		t.Errorf("read project:p (-want +got):\n%s", d)
	}
	n := 0
	for _, err := range e.Read(ctx, authz.TupleFilter{User: "user:u", Object: "delegation:"}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("read by type found %d tuples, want 1", n)
	}
	// Deleting a conditioned tuple needs no condition.
	write(t, e, nil, []authz.Tuple{{User: grant.User, Relation: grant.Relation, Object: grant.Object}})
	for tp, err := range e.Read(ctx, authz.TupleFilter{Object: "project:p"}) {
		t.Errorf("after delete: %v %v", tp, err)
	}
}

// testUnavailable: once the engine cannot answer, every call is an error wrapping
// ErrUnavailable and never an allow.
func testUnavailable(t *testing.T, e authz.Engine, brk func(*testing.T, authz.Engine)) {
	write(t, e, []authz.Tuple{tuple("project:p", "project", "ticket:x"), tuple("user:u", "viewer", "ticket:x")}, nil)
	if !check(t, e, authz.Query{}, "user:u", authz.RelationCanView, "ticket:x") {
		t.Fatal("viewer cannot view before the fault")
	}
	brk(t, e)
	c := authz.Check{User: "user:u", Relation: authz.RelationCanView, Object: "ticket:x"}
	for _, q := range []authz.Query{{}, {Consistency: authz.HigherConsistency}} {
		ok, err := e.Check(ctx, q, c)
		if ok || !errors.Is(err, authz.ErrUnavailable) {
			t.Errorf("check after fault = %v, %v; want false and ErrUnavailable", ok, err)
		}
		if !errors.Is(err, clearance.ErrUnavailable) {
			t.Errorf("check error %v does not wrap clearance.ErrUnavailable", err)
		}
		res, err := e.BatchCheck(ctx, q, []authz.Check{c, c, c})
		if res != nil || !errors.Is(err, authz.ErrUnavailable) {
			t.Errorf("batch check after fault = %v, %v; want nil and ErrUnavailable", res, err)
		}
		ids, err := Collect(e.ListObjects(ctx, q, "user:u", authz.RelationCanView, "ticket"))
		if !errors.Is(err, authz.ErrUnavailable) {
			t.Errorf("list after fault = %v, %v; want ErrUnavailable", ids, err)
		}
	}
	if err := e.Write(ctx, []authz.Tuple{tuple("user:v", "viewer", "ticket:x")}, nil); !errors.Is(err, authz.ErrUnavailable) {
		t.Errorf("write after fault = %v, want ErrUnavailable", err)
	}
	if l, ok := e.(authz.UserLister); ok {
		users, err := l.ListUsers(ctx, authz.Query{Consistency: authz.HigherConsistency}, "ticket:x", authz.RelationCanView, "user")
		if users != nil || !errors.Is(err, authz.ErrUnavailable) {
			t.Errorf("list users after fault = %v, %v; want nil and ErrUnavailable", users, err)
		}
	}
	var readErr error
	for _, err := range e.Read(ctx, authz.TupleFilter{Object: "ticket:x"}) {
		readErr = err
		break
	}
	if !errors.Is(readErr, authz.ErrUnavailable) {
		t.Errorf("read after fault: %v, want ErrUnavailable", readErr)
	}
}

func revision(t *testing.T, r authz.Revisioned) authz.Revision {
	t.Helper()
	rev, err := r.Revision(ctx)
	if err != nil {
		t.Fatalf("revision: %v", err)
	}
	if rev.Key == "" || rev.Source == "" {
		t.Fatalf("revision %+v: empty", rev)
	}
	return rev
}
