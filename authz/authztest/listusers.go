package authztest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/clearance-dev/clearance/authz"
)

// lister returns e as an authz.UserLister; every backend must be one.
func lister(t *testing.T, e authz.Engine) authz.UserLister {
	t.Helper()
	l, ok := e.(authz.UserLister)
	if !ok {
		t.Fatalf("%T does not implement authz.UserLister", e)
	}
	return l
}

func listUsers(t *testing.T, l authz.UserLister, q authz.Query, object, relation, typ string) []string {
	t.Helper()
	got, err := l.ListUsers(ctx, q, object, relation, typ)
	if err != nil {
		t.Fatalf("ListUsers(%s#%s, %s): %v", object, relation, typ, err)
	}
	return got
}

// testListUsers: the audience of a project and of a ticket, with nested teams
// expanded, tenant admins, direct shares, and blocks (on a user through a team,
// and on a service account) subtracted; a revocation shows at once; the answer
// lists every user beyond OpenFGA's default cap of 1,000; a cut-off is an error.
func testListUsers(t *testing.T, e authz.Engine) {
	l := lister(t, e)
	write(t, e, []authz.Tuple{
		tuple("tenant:t1", "tenant", "project:p"),
		tuple("user:adm", "admin", "tenant:t1"),
		tuple("user:a", "member", "team:x"),
		tuple("team:x#member", "member", "team:y"),
		tuple("team:y#member", "member", "project:p"),
		tuple("user:b", "viewer", "project:p"),
		tuple("service_account:s", "viewer", "project:p"),
		tuple("project:p", "project", "ticket:k"),
		tuple("user:c", "viewer", "ticket:k"),
		tuple("service_account:s2", "editor", "ticket:k"),
		tuple("team:x#member", "blocked", "ticket:k"),
		tuple("service_account:s", "blocked", "ticket:k"),
		tuple("user:billing", "billing_manager", "tenant:t1"),
	}, nil)
	hc := authz.Query{Consistency: authz.HigherConsistency}
	for _, tc := range []struct {
		object, typ string
		want        []string
	}{
		{"project:p", "user", []string{"user:a", "user:adm", "user:b"}},
		{"project:p", "service_account", []string{"service_account:s"}},
		{"ticket:k", "user", []string{"user:adm", "user:b", "user:c"}},
		{"ticket:k", "service_account", []string{"service_account:s2"}},
		{"ticket:missing", "user", []string{}},
	} {
		got := listUsers(t, l, hc, tc.object, authz.RelationCanView, tc.typ)
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ListUsers(%s can_view %s) (-want +got):\n%s", tc.object, tc.typ, d)
		}
		// Each listed user passes Check, and the answer agrees with Check for
		// the ones left out.
		for _, u := range []string{"user:a", "user:adm", "user:b", "user:c", "user:billing", "service_account:s", "service_account:s2"} {
			if u[:4] != tc.typ[:4] {
				continue
			}
			if in, ok := slices.Contains(got, u), check(t, e, hc, u, authz.RelationCanView, tc.object); in != ok {
				t.Errorf("%s on %s: listed %v, check %v", u, tc.object, in, ok)
			}
		}
	}
	// Revocation: the next listing no longer has b.
	write(t, e, nil, []authz.Tuple{tuple("user:b", "viewer", "project:p")})
	if got := listUsers(t, l, hc, "ticket:k", authz.RelationCanView, "user"); slices.Contains(got, "user:b") {
		t.Errorf("revoked viewer still listed: %v", got)
	}

	// Beyond OpenFGA's default cap of 1,000 users, through one team.
	const n = 1500
	ts := []authz.Tuple{tuple("team:big#member", "member", "project:big"), tuple("tenant:t1", "tenant", "project:big")}
	want := []string{"user:adm"}
	for i := range n {
		u := fmt.Sprintf("user:u%05d", i)
		want = append(want, u)
		ts = append(ts, tuple(u, "member", "team:big"))
	}
	slices.Sort(want)
	for part := range slices.Chunk(ts, 1000) {
		write(t, e, part, nil)
	}
	got := listUsers(t, l, authz.Query{}, "project:big", authz.RelationCanView, "user")
	if len(got) != len(want) {
		t.Fatalf("listed %d users, want %d", len(got), len(want))
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("large listing differs (-want +got):\n%s", d)
	}

	// A caller context that has ended is a cut-off or no answer, never a list.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	got, err := l.ListUsers(cctx, authz.Query{}, "project:big", authz.RelationCanView, "user")
	if err == nil || (!errors.Is(err, authz.ErrTruncated) && !errors.Is(err, authz.ErrUnavailable)) {
		t.Errorf("ListUsers with an ended context = %d users, %v; want ErrTruncated or ErrUnavailable", len(got), err)
	}
}
