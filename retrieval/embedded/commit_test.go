package embedded

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/clearance-dev/clearance/retrieval"
)

// TestBatchChecksSeeEarlierOps commits one batch in which later writes depend
// on earlier ones, and checks results, the state, and the state after reopen.
func TestBatchChecksSeeEarlierOps(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(t.Context(), Config{DataDir: dir, Meta: crashMeta})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	upsert := func(id, project string) *op {
		u, err := s.validate(retrieval.Ticket{ID: id, Tenant: "acme", Project: project, Title: id}, chunksOf(rng, 2, id))
		if err != nil {
			t.Fatal(err)
		}
		return &op{kind: opUpsert, id: id, project: project, u: u, record: encodeUpsert(u)}
	}
	move := func(id, project string) *op {
		return &op{kind: opMove, id: id, project: project, record: encodeMove(id, project)}
	}
	del := func(id string) *op { return &op{kind: opDelete, id: id, record: encodeDelete(id)} }
	batch := []*op{
		upsert("X", "p1"),
		move("X", "p2"), // X exists only through the first op
		upsert("Y", "p1"),
		del("X"),
		move("X", "p3"), // gone again: not found
		del("missing"),  // no-op
		move("Y", "p1"), // already there: no-op
		upsert("X", "p4"),
	}
	for _, o := range batch {
		o.done = make(chan error, 1)
	}
	before := s.disk.walBytes
	s.writeMu.Lock()
	s.commitBatch(batch)
	s.writeMu.Unlock()
	for i, o := range batch {
		err := <-o.done
		if wantErr := i == 4; (err != nil) != wantErr || (wantErr && !errors.Is(err, retrieval.ErrNotFound)) {
			t.Fatalf("op %d (%c %s): %v", i, "?udm"[o.kind], o.id, err)
		}
	}
	logged := 0
	for _, i := range []int{0, 1, 2, 3, 7} {
		logged += frameHeader + len(batch[i].record)
	}
	if got := s.disk.walBytes - before; got != int64(logged) {
		t.Fatalf("batch wrote %d log bytes, want %d (five records)", got, logged)
	}
	for id, project := range map[string]string{"X": "p4", "Y": "p1"} {
		if tk, err := s.Get(t.Context(), id); err != nil || tk.Project != project {
			t.Fatalf("Get(%s) = %+v, %v; want project %s", id, tk, err, project)
		}
	}
	closeReopenSame(t, s)
}

// closeReopenSame closes s, reopens its data dir and expects the same state.
func closeReopenSame(t *testing.T, s *Store) {
	t.Helper()
	want := fingerprint(t, s)
	s.Close()
	s, err := Open(t.Context(), Config{DataDir: s.DataDir(), Meta: crashMeta})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := fingerprint(t, s); got != want {
		t.Fatalf("after reopen:\n%s\nwant\n%s", got, want)
	}
}

// TestConcurrentSyncedWriters has many goroutines write with fsync (so group
// commits form) and checks that every acknowledged write is in the store and
// survives a reopen.
func TestConcurrentSyncedWriters(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(t.Context(), Config{DataDir: dir, Meta: crashMeta})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i%5)
				var err error
				switch i % 4 {
				case 3: // the ticket written just before
					err = s.Move(t.Context(), fmt.Sprintf("w%d-%d", w, (i-1)%5), "moved")
				default:
					err = s.Upsert(t.Context(), retrieval.Ticket{ID: id, Tenant: "acme", Project: "p", Title: fmt.Sprint(i)}, chunksOf(rng, 1+i%3, fmt.Sprint(i)))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, _ := s.Stats(t.Context())
	if st.Tickets != writers*5 {
		t.Fatalf("%d tickets, want %d", st.Tickets, writers*5)
	}
	closeReopenSame(t, s)
}
