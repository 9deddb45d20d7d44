package fga

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/clearance-dev/clearance/authz"
)

// ChangePage is one page of OpenFGA's change log (ReadChanges).
type ChangePage struct {
	// Times are the changes' timestamps, in log (ULID) order.
	Times []time.Time
	// Token is the continuation token after the page's last change. OpenFGA
	// returns the request's own token when there is no change after it.
	Token string
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
	known      bool // last and count describe the log after the floor
	last       string
	count      int
	gen        uint64
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
	token, total := c.floorToken, 0
	newFloor, dropped, recentPages := c.floorToken, 0, 0
	ok := false
	defer func() {
		if newFloor != c.floorToken {
			c.floorToken, c.floorStart = newFloor, time.Time{}
		}
		if !ok {
			c.known = false
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
		if n := len(p.Times); n > 0 {
			total += n
			token = p.Token
			if recentPages == 0 && p.Times[n-1].Before(cut) {
				newFloor, dropped = p.Token, dropped+n
			} else {
				recentPages++
			}
		}
		if len(p.Times) < c.cfg.PageSize {
			break
		}
	}
	if !c.known || token != c.last || total != c.count {
		c.gen++
	}
	c.known, c.last, c.count = true, token, total-dropped
	ok = true
	return authz.Revision{Key: strconv.FormatUint(c.gen, 10), Source: authz.RevisionChangelog}, nil
}
