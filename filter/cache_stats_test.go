package filter

import (
	"testing"
	"time"
)

// TestPrefilterCacheStats: the counters /metrics reads count what the cache did.
func TestPrefilterCacheStats(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newCache(1)
	c.get("a", now) // miss
	c.put("a", listing{}, now, 0)
	c.get("a", now)                         // hit
	c.put("b", listing{}, now, time.Second) // evicts a
	c.get("b", now.Add(2*time.Second))      // expired: miss
	want := PrefilterCacheStats{Hits: 1, Misses: 2, Expired: 1, Evictions: 1, Entries: 0}
	if got := c.stats(); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	off := newCache(-1)
	off.get("a", now)
	if got := off.stats(); got != (PrefilterCacheStats{}) {
		t.Fatalf("a disabled cache counted %+v", got)
	}
}
