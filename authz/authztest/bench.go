package authztest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/clearance-dev/clearance/authz"
)

// Bench measures an engine loaded with the demo org: ListObjects(project) for a
// user and an agent, ListObjects(ticket), and BatchCheck of 10 and 50 tickets with
// higher consistency (the post-filter's call).
func Bench(b *testing.B, e authz.Engine) {
	f := LoadOrg(b, e)
	var tickets []string
	for _, t := range f.Tuples {
		if t.Relation == "project" && len(t.Object) > 7 && t.Object[:7] == "ticket:" {
			tickets = append(tickets, t.Object)
		}
	}
	agent := authz.Principal{Kind: authz.KindAgent, User: "anne", Agent: "copilot"}
	lists := []struct {
		name, user, rel, typ string
		q                    authz.Query
	}{
		{"ListObjects/project/user", "user:dave", authz.RelationCanView, "project", authz.Query{}},
		{"ListObjects/project/agent", agent.Subject(), authz.RelationAgentCanView, "project", authz.Query{ContextualTuples: agent.ContextualTuples()}},
		{"ListObjects/ticket/admin", "user:bob", authz.RelationCanView, "ticket", authz.Query{}},
	}
	for _, l := range lists {
		b.Run(l.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Collect(e.ListObjects(ctx, l.q, l.user, l.rel, l.typ)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, n := range []int{10, 50} {
		checks := make([]authz.Check, n)
		for i := range checks {
			checks[i] = authz.Check{User: "user:anne", Relation: authz.RelationCanView, Object: tickets[(i*7)%len(tickets)]}
		}
		b.Run(fmt.Sprintf("BatchCheck/%d", n), func(b *testing.B) {
			q := authz.Query{Consistency: authz.HigherConsistency}
			for b.Loop() {
				if _, err := e.BatchCheck(ctx, q, checks); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The same questions as concurrent single Checks, side by side with the
		// batch, to see which the post-filter should use.
		b.Run(fmt.Sprintf("ParallelCheck/%d", n), func(b *testing.B) {
			q := authz.Query{Consistency: authz.HigherConsistency}
			for b.Loop() {
				var wg sync.WaitGroup
				errs := make(chan error, len(checks))
				for _, c := range checks {
					wg.Go(func() {
						if _, err := e.Check(ctx, q, c); err != nil {
							errs <- err
						}
					})
				}
				wg.Wait()
				close(errs)
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("Check", func(b *testing.B) {
		c := authz.Check{User: "user:anne", Relation: authz.RelationCanView, Object: "ticket:WEB-1"}
		for b.Loop() {
			if _, err := e.Check(ctx, authz.Query{Consistency: authz.HigherConsistency}, c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchRevision measures the revision probe a planner makes before each cached
// pre-filter lookup: on a store whose probe window holds n changes (0 is the
// steady state; every change in the window is re-read by each probe), one caller
// at a time and many at once (concurrent callers share probes). newEngine opens
// an engine on a new, empty store.
func BenchRevision(b *testing.B, newEngine func(b *testing.B) authz.Engine) {
	for _, n := range []int{0, 10, 100, 500} {
		e := newEngine(b)
		r, ok := e.(authz.Revisioned)
		if !ok {
			b.Skip("engine has no revision")
		}
		var tuples []authz.Tuple
		for i := range n {
			tuples = append(tuples, authz.Tuple{User: fmt.Sprintf("user:u%d", i), Relation: "viewer", Object: "ticket:rev"})
		}
		if len(tuples) > 0 {
			if err := e.Write(ctx, tuples, nil); err != nil {
				b.Fatal(err)
			}
		}
		probe := func(b *testing.B) {
			if rev, err := r.Revision(ctx); err != nil || rev.Key == "" {
				b.Fatalf("revision %v: %v", rev, err)
			}
		}
		b.Run(fmt.Sprintf("window=%d", n), func(b *testing.B) {
			for b.Loop() {
				probe(b)
			}
		})
		b.Run(fmt.Sprintf("window=%d/parallel", n), func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					probe(b)
				}
			})
		})
	}
}
