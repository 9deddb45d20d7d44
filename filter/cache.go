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
}

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
		return listing{}, false
	}
	ent := e.Value.(*cacheEntry)
	if !ent.expires.IsZero() && !now.Before(ent.expires) {
		c.order.Remove(e)
		delete(c.items, key)
		return listing{}, false
	}
	c.order.MoveToFront(e)
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
	}
}
