package pgvector_test

import (
	"context"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
)

var replicaMeta = retrieval.IndexMeta{Model: "test", Dim: 3}

func openWithReplica(t *testing.T, primary, read string, maxLag time.Duration) *pgvector.Store {
	t.Helper()
	s, err := pgvector.Open(context.Background(), pgvector.Config{DatabaseURL: primary, ReadDatabaseURL: read,
		Meta: replicaMeta, MaxReplicaLag: maxLag, ReplicaProbeInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitInUse probes until the store uses its replica. Other tests write to the
// same cluster, so a probe may find the replica a little behind the primary's
// newest position even right after it caught up.
func waitInUse(t *testing.T, s *pgvector.Store) pgvector.ReplicaStatus {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st := s.ProbeReplica(context.Background()); st.InUse {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not in use after 30s: %+v", s.ReplicaStatus())
		}
	}
}

func upsertOne(t *testing.T, s *pgvector.Store, id string, v []float32) {
	t.Helper()
	tk := retrieval.Ticket{ID: id, Tenant: "acme", Project: "p", Title: id, Body: id}
	if err := s.Upsert(context.Background(), tk, []retrieval.Chunk{{Text: id, Vector: v}}); err != nil {
		t.Fatal(err)
	}
}

func hitIDs(t *testing.T, s *pgvector.Store) []string {
	t.Helper()
	res, err := s.Search(context.Background(), retrieval.SearchRequest{Vector: []float32{1, 0, 0},
		Filter: retrieval.Filter{Tenant: "acme", AllProjects: true}, K: 10})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range res.Hits {
		out = append(out, h.TicketID)
	}
	return out
}

// TestReplicaTakesSearchesUntilItLags: a caught-up replica answers searches; once
// it is further behind than the bound, the primary does, and the replica is used
// again after it catches up.
func TestReplicaTakesSearchesUntilItLags(t *testing.T) {
	ctx := context.Background()
	primary := testenv.DatabaseURL(t)
	writer := openWithReplica(t, primary, "", 0)
	upsertOne(t, writer, "A", []float32{1, 0, 0})
	replica := testenv.ReplicaURL(t, primary)
	s := openWithReplica(t, primary, replica, 200*time.Millisecond)
	if st := waitInUse(t, s); st.Staleness < 0 || st.Staleness > 200*time.Millisecond {
		t.Fatalf("caught-up replica: %+v, want staleness within the bound", st)
	}
	resume := testenv.PauseReplay(t, replica)
	upsertOne(t, writer, "B", []float32{0, 1, 0})
	// Still in use right after the write (within the bound), it misses B...
	if st := s.ProbeReplica(ctx); st.InUse {
		if got := hitIDs(t, s); len(got) != 1 || got[0] != "A" {
			t.Fatalf("searching the paused replica found %v, want only A", got)
		}
	}
	// ...until the bound passes; then the primary answers with B.
	time.Sleep(300 * time.Millisecond)
	if st := s.ProbeReplica(ctx); st.InUse {
		t.Fatalf("replica paused for 300ms still in use with a 200ms bound: %+v", st)
	}
	if got := hitIDs(t, s); len(got) != 2 {
		t.Fatalf("primary search found %v, want A and B", got)
	}
	resume()
	testenv.WaitReplayed(t, primary, replica)
	waitInUse(t, s)
	if got := hitIDs(t, s); len(got) != 2 {
		t.Fatalf("caught-up replica found %v, want A and B", got)
	}
}

// TestReplicaThatIsNotAStandbyIsNeverUsed: a read URL pointing at a primary (or
// at any database not in recovery) gives no staleness bound, so searches stay on
// the primary.
func TestReplicaThatIsNotAStandbyIsNeverUsed(t *testing.T) {
	primary := testenv.DatabaseURL(t)
	s := openWithReplica(t, primary, primary, time.Hour)
	if st := s.ProbeReplica(context.Background()); st.InUse || st.Staleness >= 0 {
		t.Fatalf("primary given as replica: %+v, want not in use with unknown staleness", st)
	}
	upsertOne(t, s, "A", []float32{1, 0, 0})
	if got := hitIDs(t, s); len(got) != 1 {
		t.Fatalf("search found %v, want A", got)
	}
}

// TestUnreachableReplicaFallsBackToPrimary: a replica that is down at start
// (nothing listens on its port) does not stop the store; searches use the primary.
func TestUnreachableReplicaFallsBackToPrimary(t *testing.T) {
	primary := testenv.DatabaseURL(t)
	down := "postgres://postgres@" + testenv.FreeAddr(t) + "/x?sslmode=disable&connect_timeout=1"
	s := openWithReplica(t, primary, down, time.Hour)
	if st := s.ReplicaStatus(); !st.Configured || st.InUse {
		t.Fatalf("unreachable replica: %+v, want configured and not in use", st)
	}
	upsertOne(t, s, "A", []float32{1, 0, 0})
	if got := hitIDs(t, s); len(got) != 1 {
		t.Fatalf("search found %v, want A", got)
	}
}

// TestLexicalSearchesReadTheReplica: lexical searches go where vector searches
// go. Through a paused replica with a generous bound they miss a ticket
// written on the primary since (and so were read there); once caught up, the
// replica finds it.
func TestLexicalSearchesReadTheReplica(t *testing.T) {
	ctx := context.Background()
	primary := testenv.DatabaseURL(t)
	writer := openWithReplica(t, primary, "", 0)
	upsertOne(t, writer, "A", []float32{1, 0, 0})
	replica := testenv.ReplicaURL(t, primary)
	s := openWithReplica(t, primary, replica, time.Hour)
	waitInUse(t, s)
	lexIDs := func() []string {
		t.Helper()
		// Each ticket's title, body and chunk text is its id: "a" or "b".
		res, err := s.SearchLexical(ctx, retrieval.LexicalRequest{Terms: []string{"a", "b"},
			Filter: retrieval.Filter{Tenant: "acme", AllProjects: true}, K: 10})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range res.Hits {
			out = append(out, h.TicketID)
		}
		return out
	}
	if got := lexIDs(); len(got) != 1 || got[0] != "A" {
		t.Fatalf("before the pause: %v, want A", got)
	}
	resume := testenv.PauseReplay(t, replica)
	upsertOne(t, writer, "B", []float32{0, 1, 0})
	if st := s.ProbeReplica(ctx); !st.InUse {
		t.Fatalf("paused replica with a one-hour bound not in use: %+v", st)
	}
	if got := lexIDs(); len(got) != 1 || got[0] != "A" {
		t.Fatalf("through the paused replica: %v, want only A (B is not replayed yet)", got)
	}
	resume()
	testenv.WaitReplayed(t, primary, replica)
	waitInUse(t, s)
	if got := lexIDs(); len(got) != 2 {
		t.Fatalf("caught-up replica: %v, want A and B", got)
	}
}
