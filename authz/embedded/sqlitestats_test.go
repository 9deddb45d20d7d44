package embedded_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
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
// ticket tuple to find a user's few; the statistics the engine pins at open make
// it use the reverse-lookup index, also over misleading statistics already in the
// file (a sampled ANALYZE at 500,000 tickets wrote these). Answers are the same
// either way.
func TestSQLiteStatisticsSteerReverseLookups(t *testing.T) {
	const index = "idx_reverse_lookup_user"
	dir := t.TempDir()
	off := open(t, embedded.Config{DataDir: dir, SQLiteUnpinnedStatistics: true})
	shared := writeTickets(t, off, 4000)
	slices.Sort(shared)
	if plan := reverseLookupPlan(t, off); strings.Contains(plan, index) {
		t.Fatalf("without statistics the plan already uses %s (%s): this test no longer shows anything", index, plan)
	}
	if got := sharedWithAlice(t, off); !slices.Equal(got, shared) {
		t.Fatalf("shared without statistics = %v, want %v", got, shared)
	}
	off.Close()

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "openfga.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"ANALYZE",
		"UPDATE sqlite_stat1 SET stat = '480000 1001 1001 1001 1001 501 501' WHERE idx = 'idx_reverse_lookup_user'",
		"UPDATE sqlite_stat1 SET stat = '480000 1001 1001 1 1 1 1 1' WHERE idx = 'sqlite_autoindex_tuple_1'",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	on := open(t, embedded.Config{DataDir: dir})
	defer on.Close()
	if plan := reverseLookupPlan(t, on); !strings.Contains(plan, index) {
		t.Fatalf("after open the plan is %q, want it to use %s", plan, index)
	}
	if got := sharedWithAlice(t, on); !slices.Equal(got, shared) {
		t.Fatalf("shared with statistics = %v, want %v", got, shared)
	}
}
