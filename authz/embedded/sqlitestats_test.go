package embedded_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/embedded"
)

// writeTickets stores n tickets over 40 projects and shares three with alice.
func writeTickets(t *testing.T, e *embedded.Engine, n int) []string {
	t.Helper()
	var tuples []authz.Tuple
	for i := range n {
		tuples = append(tuples, authz.Tuple{User: fmt.Sprintf("project:p%d", i%40), Relation: "project", Object: fmt.Sprintf("ticket:T-%d", i)})
	}
	shared := []string{"T-7", "T-1234", "T-3999"}
	for _, id := range shared {
		tuples = append(tuples, authz.Tuple{User: "user:alice", Relation: "viewer", Object: "ticket:" + id})
	}
	if err := e.Write(context.Background(), tuples, nil); err != nil {
		t.Fatal(err)
	}
	return shared
}

// reverseLookupPlan is sqlite's plan for the query OpenFGA runs to find the tuples
// of a type whose user is given (ListObjects and Read by user).
func reverseLookupPlan(t *testing.T, e *embedded.Engine) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+e.SQLitePath())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`EXPLAIN QUERY PLAN SELECT object_id FROM tuple
		WHERE store = ? AND object_type = 'ticket' AND relation = 'viewer'
		AND user_object_type = 'user' AND user_object_id = 'alice' AND user_relation = ''
		ORDER BY object_id`, e.StoreID())
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

func sharedWithAlice(t *testing.T, e *embedded.Engine) []string {
	t.Helper()
	var ids []string
	for id, err := range e.ListObjects(context.Background(), authz.Query{}, "user:alice", authz.RelationShared, "ticket") {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestSQLiteStatisticsSteerReverseLookups: without statistics sqlite walks every
// ticket tuple to find a user's few; the engine's refresh after a bulk write, and
// at open for a file written without it, makes it use the reverse-lookup index.
// Answers are the same either way.
func TestSQLiteStatisticsSteerReverseLookups(t *testing.T) {
	const index = "idx_reverse_lookup_user"
	dir := t.TempDir()
	off := open(t, embedded.Config{DataDir: dir, SQLiteAnalyzeLimit: -1})
	shared := writeTickets(t, off, 4000)
	slices.Sort(shared)
	if plan := reverseLookupPlan(t, off); strings.Contains(plan, index) {
		t.Fatalf("without statistics the plan already uses %s (%s): this test no longer shows anything", index, plan)
	}
	if got := sharedWithAlice(t, off); !slices.Equal(got, shared) {
		t.Fatalf("shared without statistics = %v, want %v", got, shared)
	}
	off.Close()

	// Reopening refreshes the statistics before the first request.
	on := open(t, embedded.Config{DataDir: dir})
	defer on.Close()
	if plan := reverseLookupPlan(t, on); !strings.Contains(plan, index) {
		t.Fatalf("after open the plan is %q, want it to use %s", plan, index)
	}
	if got := sharedWithAlice(t, on); !slices.Equal(got, shared) {
		t.Fatalf("shared with statistics = %v, want %v", got, shared)
	}

	// A bulk write into a fresh file triggers a refresh in the background.
	fresh := open(t, embedded.Config{DataDir: t.TempDir()})
	defer fresh.Close()
	writeTickets(t, fresh, 4000)
	fresh.WaitStats()
	if plan := reverseLookupPlan(t, fresh); !strings.Contains(plan, index) {
		t.Fatalf("after a bulk write the plan is %q, want it to use %s", plan, index)
	}
}
