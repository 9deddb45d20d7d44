package multinode

import (
	"testing"
	"time"
)

// TestJudge checks the reference evaluation the multi-node test holds every
// answer against (no backends needed).
func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	g := newTruth()
	g.ticket("T1", "p0")
	g.ticket("T2", "p1")
	link1 := tupleKey{User: "project:p0", Relation: "project", Object: "ticket:T1"}
	link2 := tupleKey{User: "project:p1", Relation: "project", Object: "ticket:T2"}
	member := tupleKey{User: "user:u0", Relation: "member", Object: "project:p0"}
	share := tupleKey{User: "user:u1", Relation: "viewer", Object: "ticket:T2"}
	g.writing(link1, at(0))
	g.writing(link2, at(0))
	g.writing(member, at(10))
	g.deleted(member, at(20))
	g.writing(share, at(30))
	g.deleted(share, at(40))

	for _, c := range []struct {
		user, ticket string
		s, e         int
		want         verdict
	}{
		{"u0", "T1", 12, 13, allowed},      // member
		{"u0", "T1", 5, 10, allowed},       // the write may have landed as the search ended
		{"u0", "T1", 20, 25, allowed},      // the delete was acknowledged as the search started
		{"u0", "T1", 21, 25, staleRevoked}, // revoked before the search started
		{"u0", "T1", 1, 5, leaked},         // not yet granted
		{"u0", "T2", 12, 13, leaked},       // another project
		{"u1", "T2", 35, 36, allowed},      // shared
		{"u1", "T2", 41, 42, staleRevoked}, // share revoked
		{"u1", "T1", 35, 36, leaked},       // shared another ticket
		{"u0", "T9", 12, 13, leaked},       // unknown ticket
	} {
		if got := g.judge(c.user, c.ticket, at(c.s), at(c.e)); got != c.want {
			t.Errorf("judge(%s, %s, %d..%d) = %d, want %d", c.user, c.ticket, c.s, c.e, got, c.want)
		}
	}
}
