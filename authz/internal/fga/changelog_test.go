package fga

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/authz"
)

// fakeLog is an append-only change log whose entries become visible when they
// commit, in any order, like OpenFGA's changelog table (ids are stamped before
// the transaction). A token is the id of the last change read.
type fakeLog struct {
	mu      sync.Mutex
	entries []entry // sorted by id
	reads   int
}

type entry struct {
	id        time.Time
	object    string
	committed bool
}

func (l *fakeLog) stamp(at time.Time) { l.stampObject(at, "ticket:"+at.Format(time.StampMilli)) }

func (l *fakeLog) stampObject(at time.Time, object string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, entry{id: at, object: object})
	slices.SortStableFunc(l.entries, func(a, b entry) int { return a.id.Compare(b.id) })
}

func (l *fakeLog) commit(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.entries {
		if l.entries[i].id.Equal(at) {
			l.entries[i].committed = true
		}
	}
}

func (l *fakeLog) read(_ context.Context, token string, start time.Time, pageSize int) (ChangePage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads++
	from := start
	if token != "" {
		n, err := strconv.ParseInt(token, 10, 64)
		if err != nil {
			return ChangePage{}, err
		}
		from = time.Unix(0, n)
	}
	p := ChangePage{Token: token}
	for _, e := range l.entries {
		if !e.committed || !e.id.After(from) {
			continue
		}
		if len(p.Changes) == pageSize {
			break
		}
		p.Changes = append(p.Changes, Change{Time: e.id, Operation: "TUPLE_OPERATION_WRITE", Tuple: authz.Tuple{User: "user:u", Relation: "viewer", Object: e.object}})
		p.Token = strconv.FormatInt(e.id.UnixNano(), 10)
	}
	return p, nil
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func key(t *testing.T, c *Changelog) string {
	t.Helper()
	rev, err := c.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rev.Key
}

// TestChangelogOutOfOrderCommit: a write stamped before another but committed
// after the probe that saw the other still moves the key; no write, no move,
// also after the floor advanced many windows.
func TestChangelogOutOfOrderCommit(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	log := &fakeLog{}
	c := NewChangelog(ChangelogConfig{Window: 10 * time.Second, PageSize: 2, Now: clk.Now}, log.read)
	k0 := key(t, c)
	if key(t, c) != k0 {
		t.Fatal("key moved on an empty log")
	}
	for round := range 20 {
		slow := clk.add(time.Second)
		log.stamp(slow) // in flight
		fast := clk.add(time.Second)
		log.stamp(fast)
		log.commit(fast)
		k1 := key(t, c)
		if k1 == k0 {
			t.Fatalf("round %d: key unchanged after a commit", round)
		}
		if key(t, c) != k1 {
			t.Fatalf("round %d: key moved without a write", round)
		}
		clk.add(3 * time.Second)
		log.commit(slow) // commits behind the change the last probe saw
		k2 := key(t, c)
		if k2 == k1 {
			t.Fatalf("round %d: key unchanged after an out-of-order commit", round)
		}
		clk.add(25 * time.Second) // past the window: the floor moves
		if k3 := key(t, c); k3 != k2 {
			t.Fatalf("round %d: key moved when the floor advanced", round)
		}
		k0 = key(t, c)
	}
	// The floor kept up: a probe reads only the recent pages, not the whole log.
	before := log.reads
	key(t, c)
	if n := log.reads - before; n > 2 {
		t.Errorf("a quiet probe made %d reads after 40 changes", n)
	}
}

// TestChangelogBusy: more changes in the window than a probe reads is "unknown",
// and the key moves once the probe can compare again.
func TestChangelogBusy(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	log := &fakeLog{}
	c := NewChangelog(ChangelogConfig{Window: 10 * time.Second, PageSize: 2, MaxPages: 3, Now: clk.Now}, log.read)
	k0 := key(t, c)
	for range 7 {
		at := clk.add(time.Millisecond)
		log.stamp(at)
		log.commit(at)
	}
	if _, err := c.Revision(context.Background()); !errors.Is(err, ErrChangelogBusy) {
		t.Fatalf("busy window: err = %v", err)
	}
	clk.add(time.Minute)
	if k := key(t, c); k == k0 {
		t.Error("key after a busy window equals the one before")
	}
}

// TestChangelogSharedProbes: concurrent callers share probes, and each gets a
// key that reflects every write committed before it called.
func TestChangelogSharedProbes(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	log := &fakeLog{}
	c := NewChangelog(ChangelogConfig{Window: 10 * time.Second, Now: clk.Now}, log.read)
	seen := map[string]bool{key(t, c): true}
	for range 50 {
		at := clk.add(time.Millisecond)
		log.stamp(at)
		log.commit(at)
		keys := make([]string, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() { keys[i] = key(t, c) })
		}
		wg.Wait()
		for _, k := range keys {
			if seen[k] {
				t.Fatalf("a caller got key %s from before the last write", k)
			}
		}
		for _, k := range keys {
			seen[k] = true
		}
	}
}

func revision(t *testing.T, c *Changelog) authz.Revision {
	t.Helper()
	rev, err := c.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// TestChangelogChangedObjects: the objects named between two keys are those of
// exactly the changes committed in between, an out-of-order commit and a floor
// that moved included; after a probe that could not compare, the answer is
// "unknown".
func TestChangelogChangedObjects(t *testing.T) {
	clk := &clock{now: time.Unix(1_000_000, 0)}
	log := &fakeLog{}
	c := NewChangelog(ChangelogConfig{Window: 10 * time.Second, PageSize: 2, MaxPages: 3, Now: clk.Now}, log.read)
	changed := func(from, to authz.Revision) []string {
		t.Helper()
		objs, ok := c.ChangedObjects(from, to)
		if !ok {
			t.Fatalf("ChangedObjects(%s, %s): unknown", from, to)
		}
		slices.Sort(objs)
		return objs
	}
	r0 := revision(t, c)
	if _, ok := c.ChangedObjects(authz.Revision{}, r0); ok {
		t.Error("changes before the first key are known")
	}
	slow := clk.add(time.Second)
	log.stampObject(slow, "ticket:slow") // in flight
	fast := clk.add(time.Second)
	log.stampObject(fast, "project:fast")
	log.commit(fast)
	r1 := revision(t, c)
	if got := changed(r0, r1); !slices.Equal(got, []string{"project:fast"}) {
		t.Fatalf("r0..r1: %v", got)
	}
	if got := changed(r1, r1); len(got) != 0 {
		t.Fatalf("r1..r1: %v", got)
	}
	clk.add(3 * time.Second)
	log.commit(slow) // behind the change r1 saw
	also := clk.add(time.Millisecond)
	log.stampObject(also, "ticket:also")
	log.commit(also)
	r2 := revision(t, c)
	if got := changed(r1, r2); !slices.Equal(got, []string{"ticket:also", "ticket:slow"}) {
		t.Fatalf("r1..r2: %v", got)
	}
	if got := changed(r0, r2); !slices.Equal(got, []string{"project:fast", "ticket:also", "ticket:slow"}) {
		t.Fatalf("r0..r2: %v", got)
	}
	clk.add(time.Minute) // the floor moves past all of them
	if r := revision(t, c); r != r2 {
		t.Fatalf("key moved with the floor: %s", r)
	}
	last := clk.add(time.Second)
	log.stampObject(last, "ticket:last")
	log.commit(last)
	r3 := revision(t, c)
	if got := changed(r2, r3); !slices.Equal(got, []string{"ticket:last"}) {
		t.Fatalf("r2..r3 after the floor moved: %v", got)
	}
	if _, ok := c.ChangedObjects(r3, r2); ok {
		t.Error("keys out of order are known")
	}
	// A busy window: the probe fails, and the key after it names nothing.
	for range 7 {
		at := clk.add(time.Millisecond)
		log.stamp(at)
		log.commit(at)
	}
	if _, err := c.Revision(context.Background()); !errors.Is(err, ErrChangelogBusy) {
		t.Fatalf("busy window: err = %v", err)
	}
	clk.add(time.Minute)
	r4 := revision(t, c)
	if _, ok := c.ChangedObjects(r3, r4); ok {
		t.Error("changes across a busy probe are known")
	}
	at := clk.add(time.Second)
	log.stampObject(at, "team:t")
	log.commit(at)
	if got := changed(r4, revision(t, c)); !slices.Equal(got, []string{"team:t"}) {
		t.Fatalf("after the busy window: %v", got)
	}
}
