package fga

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/clearance-dev/clearance/authz"
)

// ChangePage is one page of OpenFGA's change log (ReadChanges).
type ChangePage struct {
	// Changes are the page's changes, in log (ULID) order.
	Changes []Change
	// Token is the continuation token after the page's last change. OpenFGA
	// returns the request's own token when there is no change after it.
	Token string
}

// Change is one entry of the change log: a tuple written or deleted.
type Change struct {
	// Time is the change's timestamp (its ULID's, to the millisecond).
	Time time.Time
	// Operation is the write or delete, as the server names it.
	Operation string
	// Tuple is the tuple key changed; its condition is not needed.
	Tuple authz.Tuple
}

// id identifies a change among the log's entries after a floor: two entries
// with the same id (the same tuple written, deleted and written again within
// one millisecond) are counted as a multiset.
func (ch Change) id() string {
	return strconv.FormatInt(ch.Time.UnixNano(), 36) + " " + ch.Operation + " " + ch.Tuple.String()
}

// ReadChanges reads one page of changes of every type after token, or, when
// token is empty, after start.
type ReadChanges func(ctx context.Context, token string, start time.Time, pageSize int) (ChangePage, error)

// Changelog defaults.
const (
	DefaultChangelogWindow   = 30 * time.Second
	DefaultChangelogPageSize = 100 // OpenFGA's default --read-changes-max-page-size
	DefaultChangelogMaxPages = 10
	DefaultChangelogTimeout  = 5 * time.Second
)

// Bounds of the record behind ChangedObjects.
const (
	changedRevisions = 1024 // key generations remembered
	changedObjects   = 256  // objects remembered per generation; more is "unknown"
)

// ChangelogConfig tunes a Changelog. Zero fields take the defaults.
type ChangelogConfig struct {
	// Window is the longest a tuple write may take from the moment its change id
	// (a ULID) is stamped to its commit, writers' clock skew included. OpenFGA
	// stamps the id before the transaction, so concurrent writes can commit out
	// of id order: a probe re-reads the last Window of the log to catch a write
	// that committed behind a later one.
	Window time.Duration
	// PageSize of one ReadChanges call (at most the server's
	// --read-changes-max-page-size).
	PageSize int
	// MaxPages bounds the calls of one probe for changes inside the window. A
	// window holding more (a bulk import) makes the probe answer "unknown": no
	// cache until it calms. Older pages are read once, as the floor catches up,
	// within Timeout.
	MaxPages int
	// Timeout bounds one probe.
	Timeout time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// Changelog turns OpenFGA's change log into a revision every replica agrees on
// about what changed: Revision's key moves whenever a change committed (through
// any process) since the previous probe.
//
// How: the log is append-only. A probe reads every change after a floor
// position and compares the count and the last position with the previous
// probe's; any newly committed change, even one whose id sorts before an
// older-committed change, adds to the count as long as its id is after the
// floor. The floor only advances past pages whose changes are older than
// Window, which no write still in flight can sort before. The key itself is a
// generation number local to this process; what moves it is shared.
//
// Concurrent callers share probes, but a caller only ever takes the result of a
// probe that started after it called, so no write acknowledged before the call
// is missed.
type Changelog struct {
	cfg  ChangelogConfig
	read ReadChanges

	mu      sync.Mutex
	running bool
	next    *round

	// Probe state, touched only by the one running probe.
	floorToken string
	floorStart time.Time
	known      bool // last and seen describe the log after the floor
	last       string
	// seen is the multiset of changes after the floor (by Change.id) as of the
	// last probe that compared. At most about MaxPages pages: a probe that finds
	// more recent changes is busy and leaves the state unknown.
	seen map[string]int
	gen  uint64

	// changed records, for each of the last generations, the objects of the
	// changes that moved the key to it (nil: unknown). Written by the probe
	// before its key is handed out, read by ChangedObjects.
	changedMu sync.Mutex
	changed   map[uint64][]string
}

type round struct {
	done chan struct{}
	rev  authz.Revision
	err  error
}

// ErrChangelogBusy: more changes in the window than one probe reads.
var ErrChangelogBusy = errors.New("change log: too many recent changes to compare")

// NewChangelog returns a tracker over read.
func NewChangelog(cfg ChangelogConfig, read ReadChanges) *Changelog {
	cfg.Window = cmp.Or(cfg.Window, DefaultChangelogWindow)
	cfg.PageSize = cmp.Or(cfg.PageSize, DefaultChangelogPageSize)
	cfg.MaxPages = cmp.Or(cfg.MaxPages, DefaultChangelogMaxPages)
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultChangelogTimeout)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Changelog{cfg: cfg, read: read}
}

// Revision implements authz.Revisioned.
func (c *Changelog) Revision(ctx context.Context) (authz.Revision, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &round{done: make(chan struct{})}
	}
	r := c.next
	if !c.running {
		c.running = true
		c.next = nil
		go c.run(r)
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.rev, r.err
	case <-ctx.Done():
		return authz.Revision{}, fmt.Errorf("%w: change log: %w", authz.ErrUnavailable, ctx.Err())
	}
}

// run probes for r, then for every round that callers joined meanwhile.
func (c *Changelog) run(r *round) {
	for r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		r.rev, r.err = c.probe(ctx)
		cancel()
		close(r.done)
		c.mu.Lock()
		r, c.next = c.next, nil
		if r == nil {
			c.running = false
		}
		c.mu.Unlock()
	}
}

func (c *Changelog) probe(ctx context.Context) (authz.Revision, error) {
	now := c.cfg.Now()
	cut := now.Add(-c.cfg.Window)
	if c.floorToken == "" && c.floorStart.IsZero() {
		c.floorStart = cut
	}
	// Pages wholly older than the window move the floor as they are read (the
	// comparison below still counts them: they are after the old floor). The new
	// floor is kept however the probe ends, so catching up after a bulk write is
	// done once; a probe that does not end in a comparison leaves the state
	// unknown, and the next one moves the key.
	token := c.floorToken
	newFloor, recentPages := c.floorToken, 0
	// The log is append-only and this probe reads from the previous one's
	// floor, so what it reads is what the previous one read plus the changes
	// committed since, whatever their position: a change is new when the
	// previous probe's multiset has no copy of it left. Pages are compared as
	// they are read, so memory stays at the changes after the floor (at most
	// about MaxPages pages) however many older pages a catch-up reads.
	var left map[string]int
	if c.known {
		left = maps.Clone(c.seen)
	}
	cur := map[string]int{} // the changes after the new floor
	moved, objs := !c.known, []string{}
	if !c.known {
		objs = nil
	}
	ok := false
	defer func() {
		if newFloor != c.floorToken {
			c.floorToken, c.floorStart = newFloor, time.Time{}
		}
		if !ok {
			c.known, c.seen = false, nil
		}
	}()
	for {
		if recentPages == c.cfg.MaxPages {
			return authz.Revision{}, ErrChangelogBusy
		}
		p, err := c.read(ctx, token, c.floorStart, c.cfg.PageSize)
		if err != nil {
			return authz.Revision{}, err
		}
		if n := len(p.Changes); n > 0 {
			token = p.Token
			old := recentPages == 0 && p.Changes[n-1].Time.Before(cut)
			if old {
				newFloor = p.Token
			} else {
				recentPages++
			}
			for _, ch := range p.Changes {
				id := ch.id()
				if !old {
					cur[id]++
				}
				if left[id] > 0 {
					left[id]--
					continue
				}
				moved = true
				if objs != nil {
					objs = append(objs, ch.Tuple.Object)
				}
				if len(objs) > changedObjects {
					objs = nil
				}
			}
		}
		if len(p.Changes) < c.cfg.PageSize {
			break
		}
	}
	if token != c.last {
		moved = true
	}
	for _, n := range left {
		if n > 0 { // a change the previous probe read is gone: not our log
			moved, objs = true, nil
			break
		}
	}
	if moved && len(objs) == 0 {
		objs = nil
	}
	if moved {
		c.gen++
		c.changedMu.Lock()
		if c.changed == nil {
			c.changed = map[uint64][]string{}
		}
		c.changed[c.gen] = objs
		delete(c.changed, c.gen-changedRevisions)
		c.changedMu.Unlock()
	}
	c.known, c.last, c.seen = true, token, cur
	ok = true
	return authz.Revision{Key: strconv.FormatUint(c.gen, 10), Source: authz.RevisionChangelog}, nil
}

// ChangedObjects implements authz.ChangeLister for keys this Changelog
// returned: the objects of every change that moved the key after from, up to
// to. ok is false when it cannot say (another source, keys out of order, a
// probe that could not compare, too many changes, or generations no longer
// remembered); the caller must then assume anything changed.
//
// A change that moved the key to a generation is one the previous probe did
// not read and this one did. A write that committed before a probe began is
// read by it (Revision), so every write between two probes' starts is named
// by one of the generations in between, or by the later one.
func (c *Changelog) ChangedObjects(from, to authz.Revision) (objects []string, ok bool) {
	if from.Source != authz.RevisionChangelog || to.Source != authz.RevisionChangelog {
		return nil, false
	}
	f, err1 := strconv.ParseUint(from.Key, 10, 64)
	t, err2 := strconv.ParseUint(to.Key, 10, 64)
	if err1 != nil || err2 != nil || t < f || t-f > changedRevisions {
		return nil, false
	}
	c.changedMu.Lock()
	defer c.changedMu.Unlock()
	for g := f + 1; g <= t; g++ {
		objs, found := c.changed[g]
		if !found || objs == nil {
			return nil, false
		}
		objects = append(objects, objs...)
	}
	return objects, true
}
