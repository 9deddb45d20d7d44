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
