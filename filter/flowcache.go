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
// listing would now. The cache holds one revision: the first request at
// another revision drops everything. Listings do not depend on the caller (no
// contextual tuples) and, in clearance's model, not on the time (can_view,
// shared and blocked read no conditioned tuple), so nothing else keys them;
// with another model the cache stays off (NewFlow).
type flowListings struct {
	maxEntries, maxUsers int

	mu    sync.Mutex
	rev   authz.Revision
	m     map[memoKey][]string
	users int // names held, summed over entries

	hits, misses uint64
}

func newFlowListings(maxEntries, maxUsers int) *flowListings {
	return &flowListings{maxEntries: maxEntries, maxUsers: maxUsers, m: map[memoKey][]string{}}
}

// get answers the listing of k at rev, if held.
func (c *flowListings) get(rev authz.Revision, k memoKey) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rev != rev {
		c.misses++
		return nil, false
	}
	users, ok := c.m[k]
	if ok {
		c.hits++
	} else {
		c.misses++
	}
	return users, ok
}

// put keeps a complete listing of k made after rev was read. Entries of
// another revision are dropped first; when full, everything is (the entries
// of one revision are cheap to list again, and a simple bound cannot be
// wrong).
func (c *flowListings) put(rev authz.Revision, k memoKey, users []string) {
	if len(users) > c.maxUsers {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rev != rev || len(c.m) >= c.maxEntries || c.users+len(users) > c.maxUsers {
		clear(c.m)
		c.users = 0
		c.rev = rev
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
	// DirectServiceAccounts counts service-account listings answered from
	// direct tuples (flowsa.go) instead of the engine's ListUsers, kept or not.
	DirectServiceAccounts int64
}

// CacheStats reports the listing cache's counters (zero when it is off).
func (f *Flow) CacheStats() FlowCacheStats {
	st := FlowCacheStats{DirectServiceAccounts: f.directSAs.Load()}
	c := f.cache
	if c == nil {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.Hits, st.Misses, st.Entries, st.Users = c.hits, c.misses, len(c.m), c.users
	return st
}
