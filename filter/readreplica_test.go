package filter_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
)

// TestLaggingReadReplicaLeaksNothing searches pgvector through a real streaming
// replica whose replay is paused while tickets move, disappear and appear on the
// primary and in the engine. The stale replica still proposes the moved and the
// deleted ticket; the post-filter, which asks the engine at HIGHER_CONSISTENCY,
// must deny both. What the lag costs is recall: the ticket indexed after the
// pause is not found while the replica is used, and is found once the store
// judges the replica too far behind and reads the primary.
func TestLaggingReadReplicaLeaksNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	primary := testenv.DatabaseURL(t)
	meta := retrieval.IndexMeta{Model: f.emb.Model(), Dim: f.emb.Dim()}
	upsert := func(s *pgvector.Store, tk retrieval.Ticket) {
		t.Helper()
		v, err := f.emb.Embed(ctx, []string{tk.Title + " " + tk.Body})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Upsert(ctx, tk, []retrieval.Chunk{{Text: tk.Body, Vector: v[0]}}); err != nil {
			t.Fatal(err)
		}
	}
	writer, err := pgvector.Open(ctx, pgvector.Config{DatabaseURL: primary, Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	t7 := retrieval.Ticket{ID: "T-7", Tenant: "acme", Project: "apollo", Title: "Cache timeout", Body: "database timeout in the cache layer"}
	for _, tk := range append(slices.Clone(fixtureTickets), t7) {
		upsert(writer, tk)
	}
	if err := f.eng.Write(ctx, []authz.Tuple{{User: "project:apollo", Relation: "project", Object: "ticket:T-7"}}, nil); err != nil {
		t.Fatal(err)
	}
	replicaURL := testenv.ReplicaURL(t, primary)
	openReader := func(maxLag time.Duration) *pgvector.Store {
		s, err := pgvector.Open(ctx, pgvector.Config{DatabaseURL: primary, ReadDatabaseURL: replicaURL, Meta: meta,
			MaxReplicaLag: maxLag, ReplicaProbeInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	// Reads the replica however far behind it falls.
	reader := openReader(time.Hour)
	// Other tests write to the same cluster, so the first probe may find the
	// replica a little behind the primary's newest position: wait for a probe
	// that has seen it replay a sample.
	for deadline := time.Now().Add(30 * time.Second); !reader.ProbeReplica(ctx).InUse; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("caught-up replica not in use after 30s: %+v", reader.ReplicaStatus())
		}
	}
	anne := user("acme", "anne")
	before := ids(search(t, f.planner(nil, reader, nil), anne, filter.Request{}))
	if !slices.Contains(before, "T-2") || !slices.Contains(before, "T-7") {
		t.Fatalf("before the changes anne finds %v, want T-2 and T-7 among them", before)
	}

	testenv.PauseReplay(t, replicaURL)
	t6 := retrieval.Ticket{ID: "T-6", Tenant: "acme", Project: "apollo", Title: "Timeout again", Body: "database timeout login outage again"}
	upsert(writer, t6)
	if err := writer.Move(ctx, "T-2", "secret"); err != nil {
		t.Fatal(err)
	}
	if err := writer.Delete(ctx, "T-7"); err != nil {
		t.Fatal(err)
	}
	err = f.eng.Write(ctx,
		[]authz.Tuple{
			{User: "tenant:acme", Relation: "tenant", Object: "project:secret"},
			{User: "project:secret", Relation: "project", Object: "ticket:T-2"},
			{User: "project:apollo", Relation: "project", Object: "ticket:T-6"},
		},
		[]authz.Tuple{
			{User: "project:apollo", Relation: "project", Object: "ticket:T-2"},
			{User: "project:apollo", Relation: "project", Object: "ticket:T-7"},
			{User: "user:anne", Relation: "viewer", Object: "project:zeus"},
		})
	if err != nil {
		t.Fatal(err)
	}
	// The replica really is behind: it still holds the deleted ticket.
	conn, err := pgx.Connect(ctx, replicaURL)
	if err != nil {
		t.Fatal(err)
	}
	var stale int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM clearance_vector_tickets WHERE id = 'T-7'`).Scan(&stale)
	conn.Close(ctx)
	if err != nil || stale != 1 {
		t.Fatalf("replica rows for the deleted T-7: %d (%v), want 1: replay is not paused", stale, err)
	}
	if st := reader.ProbeReplica(ctx); !st.InUse || st.Staleness <= 0 {
		t.Fatalf("lagging replica with a one-hour bound: %+v, want in use with a positive staleness", st)
	}

	pl := f.planner(nil, reader, nil)
	resp := search(t, pl, anne, filter.Request{})
	if got := ids(resp); !slices.Equal(got, []string{"T-1"}) {
		t.Fatalf("anne through the lagging replica got %v, want only T-1 (T-2 moved away, T-7 deleted, T-6 not replayed yet, zeus revoked, T-4 blocked)", got)
	}
	rec, _ := f.log.Record(resp.AuditID)
	denied := map[string]bool{}
	for _, c := range rec.Results {
		if c.Decision == audit.DeniedByCheck {
			denied[c.TicketID] = true
		}
	}
	if !denied["T-2"] || !denied["T-7"] {
		t.Errorf("audit denied_by_check %v: the replica's stale T-2 and T-7 should have been proposed and denied", denied)
	}

	// A store that accepts little staleness stops reading the replica and finds
	// the new ticket on the primary.
	strict := openReader(100 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for strict.ProbeReplica(ctx).InUse {
		if time.Now().After(deadline) {
			t.Fatalf("replica paused for 10s still in use with a 100ms bound: %+v", strict.ReplicaStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := ids(search(t, f.planner(nil, strict, nil), anne, filter.Request{}))
	if !slices.Equal(got, []string{"T-1", "T-6"}) {
		t.Fatalf("anne through the primary got %v, want T-1 and T-6", got)
	}
}
