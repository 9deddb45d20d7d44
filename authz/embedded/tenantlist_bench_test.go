package embedded_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/embedded"
)

// BenchmarkTenantListing: what the planner's pre-filter could ask about a
// tenant of 1,000 projects (the 1M bench org's shape) on sqlite: listing a
// user's one project or 100 projects, listing the tenant's 1,000 projects
// (the listing ADR planner-tenant-projects dropped), reading the same tuples,
// and the tenant-admin check.
//
//	go test ./authz/embedded -run '^$' -bench TenantListing -benchtime 200x
func BenchmarkTenantListing(b *testing.B) {
	ctx := context.Background()
	e := open(b, embedded.Config{DataDir: b.TempDir()})
	defer e.Close()
	ts := tenantProjects()
	for p := range 100 {
		ts = append(ts, authz.Tuple{User: "user:u100", Relation: "member", Object: fmt.Sprintf("project:t0-p%d", p*7)})
	}
	ts = append(ts, authz.Tuple{User: "user:u1", Relation: "member", Object: "project:t0-p5"})
	ts = append(ts, authz.Tuple{User: "user:adm", Relation: "admin", Object: "tenant:t0"})
	if err := e.Write(ctx, ts, nil); err != nil {
		b.Fatal(err)
	}
	count := func(b *testing.B, user, rel, typ string) int {
		n := 0
		for _, err := range e.ListObjects(ctx, authz.Query{}, user, rel, typ) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		return n
	}
	b.Run("list-user1", func(b *testing.B) {
		for b.Loop() {
			count(b, "user:u1", "can_view", "project")
		}
	})
	b.Run("list-user100", func(b *testing.B) {
		for b.Loop() {
			count(b, "user:u100", "can_view", "project")
		}
	})
	b.Run("list-tenant", func(b *testing.B) {
		for b.Loop() {
			if n := count(b, "tenant:t0", "tenant", "project"); n != 1000 {
				b.Fatal(n)
			}
		}
	})
	b.Run("read-tenant", func(b *testing.B) {
		for b.Loop() {
			n := 0
			for _, err := range e.Read(ctx, authz.TupleFilter{User: "tenant:t0", Relation: "tenant", Object: "project:"}) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != 1000 {
				b.Fatal(n)
			}
		}
	})
	b.Run("check-admin", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.BatchCheck(ctx, authz.Query{}, []authz.Check{{User: "user:u1", Relation: "admin", Object: "tenant:t0"}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTenancyChecks: checking the tenancy of N listed projects instead
// (project#tenant, one BatchCheck), the alternative ADR planner-tenant-projects
// measured.
//
//	go test ./authz/embedded -run '^$' -bench TenancyChecks -benchtime 100x
func BenchmarkTenancyChecks(b *testing.B) {
	ctx := context.Background()
	e := open(b, embedded.Config{DataDir: b.TempDir()})
	defer e.Close()
	ts := tenantProjects()
	if err := e.Write(ctx, ts, nil); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 10, 100, 500} {
		var cs []authz.Check
		for i := range n {
			cs = append(cs, authz.Check{User: "tenant:t0", Relation: "tenant", Object: fmt.Sprintf("project:t0-p%d", i*2)})
		}
		b.Run(fmt.Sprint("batch", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := e.BatchCheck(ctx, authz.Query{}, cs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprint("batchhigher", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := e.BatchCheck(ctx, authz.Query{Consistency: authz.HigherConsistency}, cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// tenantProjects places 1,000 projects in each of 4 tenants, the 1M bench org's shape.
func tenantProjects() []authz.Tuple {
	var ts []authz.Tuple
	for t := range 4 {
		for p := range 1000 {
			ts = append(ts, authz.Tuple{User: fmt.Sprintf("tenant:t%d", t), Relation: "tenant", Object: fmt.Sprintf("project:t%d-p%d", t, p)})
		}
	}
	return ts
}
