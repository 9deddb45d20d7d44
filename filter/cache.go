package filter

import (
	"container/list"
	"sync"
	"time"
)

// cache is a bounded LRU of listings. Entries with a zero expiry live until
// evicted (their key carries the engine's tuple revision, which moves on any
// write); the others (engines without revisions) expire.
type cache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used
	items map[string]*list.Element
	// Counters for PrefilterCacheStats (under mu).
	hits, misses, expired, evictions uint64
}

// PrefilterCacheStats counts the pre-filter cache's work since the planner
// started. With a revisioned engine the key carries the revision, so a tuple
// write makes every older entry unreachable at once (they then leave by
// eviction); Expired counts entries dropped at their TTL (engines without
// revisions).
type PrefilterCacheStats struct {
	Hits, Misses, Expired, Evictions uint64
	Entries                          int
}

func (c *cache) stats() PrefilterCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return PrefilterCacheStats{Hits: c.hits, Misses: c.misses, Expired: c.expired, Evictions: c.evictions, Entries: c.order.Len()}
}

// PrefilterCacheStats reports the pre-filter cache's counters.
func (pl *Planner) PrefilterCacheStats() PrefilterCacheStats { return pl.cache.stats() }

type cacheEntry struct {
	key     string
	l       listing
	expires time.Time
}

// newCache returns a cache of at most max entries; max < 0 disables it.
func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), items: map[string]*list.Element{}}
}

// enabled says whether the cache keeps anything.
func (c *cache) enabled() bool { return c.max >= 0 }

func (c *cache) get(key string, now time.Time) (listing, bool) {
	if c.max < 0 {
		return listing{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		c.misses++
		return listing{}, false
	}
	ent := e.Value.(*cacheEntry)
	if !ent.expires.IsZero() && !now.Before(ent.expires) {
		c.order.Remove(e)
		delete(c.items, key)
		c.misses++
		c.expired++
		return listing{}, false
	}
	c.order.MoveToFront(e)
	c.hits++
	return ent.l, true
}

func (c *cache) put(key string, l listing, now time.Time, ttl time.Duration) {
	if c.max < 0 {
		return
	}
	ent := &cacheEntry{key: key, l: l}
	if ttl > 0 {
		ent.expires = now.Add(ttl)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		e.Value = ent
		c.order.MoveToFront(e)
		return
	}
	c.items[key] = c.order.PushFront(ent)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheEntry).key)
		c.evictions++
	}
}
