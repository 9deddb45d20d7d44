package multinode

import (
	"sync"
	"time"
)

// interval is when a tuple may have been present: from the start of the request
// that wrote it to the acknowledgement of the request that deleted it (zero:
// still present). Both ends are the widest the test can know, so a check against
// them never blames clearance for a race it could not see.
type interval struct{ from, to time.Time }

func (iv interval) overlaps(s, e time.Time) bool {
	return !iv.from.After(e) && (iv.to.IsZero() || !iv.to.Before(s))
}

// truth is the ground truth: every tuple the test wrote, with when.
type truth struct {
	mu        sync.Mutex
	tuples    map[tupleKey][]interval
	projectOf map[string]string // ticket id -> project (tickets never move here)
}

func newTruth() *truth {
	return &truth{tuples: map[tupleKey][]interval{}, projectOf: map[string]string{}}
}

// writing records that a write of k starts now.
func (g *truth) writing(k tupleKey, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ivs := g.tuples[k]
	if n := len(ivs); n > 0 && ivs[n-1].to.IsZero() {
		return // still open: a rewrite changes nothing
	}
	g.tuples[k] = append(ivs, interval{from: at})
}

// deleted records that a delete of k was acknowledged at.
func (g *truth) deleted(k tupleKey, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ivs := g.tuples[k]
	if n := len(ivs); n > 0 && ivs[n-1].to.IsZero() {
		ivs[n-1].to = at
	}
}

func (g *truth) ticket(id, project string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.projectOf[id] = project
}

// verdict of one returned ticket.
type verdict int

const (
	allowed      verdict = iota
	leaked               // never granted to the principal in the request's window
	staleRevoked         // granted once, but every grant was revoked (acknowledged) before the request started
)

// judge evaluates ticket's can_view for user over the request window [s, e]
// under the part of the model the test writes: a direct share
// (ticket#viewer) or membership of the ticket's project, with the
// ticket#project tuple present.
func (g *truth) judge(user, ticket string, s, e time.Time) verdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	u := "user:" + user
	var grants []interval
	grants = append(grants, g.tuples[tupleKey{User: u, Relation: "viewer", Object: "ticket:" + ticket}]...)
	if p, ok := g.projectOf[ticket]; ok {
		link := g.tuples[tupleKey{User: "project:" + p, Relation: "project", Object: "ticket:" + ticket}]
		for _, m := range g.tuples[tupleKey{User: u, Relation: "member", Object: "project:" + p}] {
			for _, l := range link {
				// Both tuples present together at some point of the window.
				iv := interval{from: later(m.from, l.from), to: earlier(m.to, l.to)}
				if iv.to.IsZero() || !iv.to.Before(iv.from) {
					grants = append(grants, iv)
				}
			}
		}
	}
	revoked := false
	for _, iv := range grants {
		if iv.overlaps(s, e) {
			return allowed
		}
		if !iv.to.IsZero() && iv.to.Before(s) {
			revoked = true
		}
	}
	if revoked {
		return staleRevoked
	}
	return leaked
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// earlier is the earlier of two interval ends, zero meaning open.
func earlier(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case a.Before(b):
		return a
	}
	return b
}

// count is the number of tuple writes and deletes recorded.
func (g *truth) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, ivs := range g.tuples {
		for _, iv := range ivs {
			n++
			if !iv.to.IsZero() {
				n++
			}
		}
	}
	return n
}

func (g *truth) project(ticket string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.projectOf[ticket]
}
