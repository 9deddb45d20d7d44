package filter

import (
	"sync"

	"github.com/clearance-dev/clearance/authz"
)

// flowListings keeps the engine's listings (ListUsers answers) between flow
// checks, for one engine revision at a time. A destination is written to again
// and again (the company-wide project, a team's project) and sources come from
// a few busy projects, so most of a check's listings were answered already;
// listing them afresh is where a check's time goes (docs/decisions/flow-check.md).
//
// Exactness: an entry is stored under the revision its request read before
// its first listing, so it reflects that revision or a later one, never an
// earlier one. A request reads the revision first and uses only entries of an
// equal revision: equal keys mean no tuple write committed in between, through
// any replica (authz.Revisioned), so the entry answers what a HIGHER_CONSISTENCY
// listing would now. The cache holds one revision. The first request at
// another revision moves it there: when the engine names the objects the
// writes in between touched (authz.ChangeLister) and all of them are tickets,
// only the listings of those tickets are dropped, otherwise everything is. A
// change to ticket:X alters no listing but X's: no type of clearance's model
// admits ticket as a user type (directly, as a userset, or as a tupleset's
// target; TestModelConditions), so no relation of a project, team or tenant
// reads a ticket's tuples, and a ticket's relations read its own tuples and
// those of other types only. Listings do not depend on the caller (no
// contextual tuples) and, in clearance's model, not on the time (can_view,
// shared and blocked read no conditioned tuple), so nothing else keys them;
// with another model the cache stays off (NewFlow).
type flowListings struct {
	maxEntries, maxUsers int
	// changes names what changed between two revisions (nil: assume anything).
	changes authz.ChangeLister

	mu    sync.Mutex
	rev   authz.Revision
	m     map[memoKey][]string
	users int // names held, summed over entries

	hits, misses uint64
	// kept counts revision moves that kept the listings of untouched objects.
	kept uint64
}

func newFlowListings(maxEntries, maxUsers int, changes authz.ChangeLister) *flowListings {
	return &flowListings{maxEntries: maxEntries, maxUsers: maxUsers, changes: changes, m: map[memoKey][]string{}}
}

// at moves the cache to rev. Called with c.mu held.
func (c *flowListings) at(rev authz.Revision) {
	if c.rev == rev {
		return
	}
	prev := c.rev
	c.rev = rev
	if prev.Key != "" && c.changes != nil {
		if objs, ok := c.changes.ChangedObjects(prev, rev); ok && allTickets(objs) {
			changed := make(map[string]bool, len(objs))
			for _, o := range objs {
				changed[o] = true
			}
			for k, users := range c.m {
				if changed[k.object] {
					c.users -= len(users)
					delete(c.m, k)
				}
			}
			c.kept++
			return
		}
	}
	clear(c.m)
	c.users = 0
}

// get answers the listing of k at rev, if held.
func (c *flowListings) get(rev authz.Revision, k memoKey) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at(rev)
	users, ok := c.m[k]
	if ok {
		c.hits++
	} else {
		c.misses++
	}
	return users, ok
}

// put keeps a complete listing of k made after rev was read. The cache moves
// to rev first (at); when full, everything is dropped (the entries
// of one revision are cheap to list again, and a simple bound cannot be
// wrong).
func (c *flowListings) put(rev authz.Revision, k memoKey, users []string) {
	if len(users) > c.maxUsers {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at(rev)
	if len(c.m) >= c.maxEntries || c.users+len(users) > c.maxUsers {
		clear(c.m)
		c.users = 0
	}
	if old, ok := c.m[k]; ok {
		c.users -= len(old)
	}
	c.m[k] = users
	c.users += len(users)
}

// FlowCacheStats counts the listing cache's work since the checker started.
type FlowCacheStats struct {
	Hits, Misses uint64
	Entries      int
	Users        int
	// Kept counts revision moves after writes to tickets only, which kept
	// every other listing.
	Kept uint64
	// Direct counts listings answered from direct tuples (flowsa.go: service
	// accounts, a ticket's shares and blocks) instead of the engine's
	// ListUsers, kept or not.
	Direct int64
}

// CacheStats reports the listing cache's counters (zero when it is off).
func (f *Flow) CacheStats() FlowCacheStats {
	st := FlowCacheStats{Direct: f.directs.Load()}
	c := f.cache
	if c == nil {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.Hits, st.Misses, st.Entries, st.Users, st.Kept = c.hits, c.misses, len(c.m), c.users, c.kept
	return st
}
