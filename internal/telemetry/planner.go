package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clearance-dev/clearance/filter"
)

// PlannerCaches registers the planner's two caches' counters: the pre-filter
// cache (clearance_prefilter_cache_*) and the post-filter decision cache
// (clearance_decision_cache_*). They are read from the planner at scrape time,
// so the planner counts with plain atomics and knows nothing of Prometheus.
func (m *Telemetry) PlannerCaches(pl *filter.Planner) error {
	pre := func(f func(filter.PrefilterCacheStats) uint64) func() float64 {
		return func() float64 { return float64(f(pl.PrefilterCacheStats())) }
	}
	dec := func(f func(filter.DecisionCacheStats) uint64) func() float64 {
		return func() float64 { return float64(f(pl.DecisionCacheStats())) }
	}
	return m.Register(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clearance_prefilter_cache_hits_total",
			Help: "Pre-filter listings answered from the pre-filter cache."}, pre(func(s filter.PrefilterCacheStats) uint64 { return s.Hits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clearance_prefilter_cache_misses_total",
			Help: "Pre-filter listings asked of the engine (not cached, or expired)."}, pre(func(s filter.PrefilterCacheStats) uint64 { return s.Misses })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clearance_prefilter_cache_invalidations_total",
			Help: "Pre-filter listings dropped at their TTL (engines without revisions; with a revision a write makes older entries unreachable at once)."},
			pre(func(s filter.PrefilterCacheStats) uint64 { return s.Expired })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clearance_prefilter_cache_evictions_total",
			Help: "Pre-filter listings dropped for space (least recently used)."}, pre(func(s filter.PrefilterCacheStats) uint64 { return s.Evictions })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clearance_prefilter_cache_entries",
			Help: "Listings held by the pre-filter cache."}, func() float64 { return float64(pl.PrefilterCacheStats().Entries) }),

		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clearance_decision_cache_hits_total",
			Help: "Post-filter decisions answered from the decision cache."}, dec(func(s filter.DecisionCacheStats) uint64 { return s.Hits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clearance_decision_cache_misses_total",
			Help: "Post-filter decisions the cache did not hold (asked the engine), while the cache was usable."}, dec(func(s filter.DecisionCacheStats) uint64 { return s.Misses })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clearance_decision_cache_invalidations_total",
			Help: "Cached decisions dropped because the engine's revision moved or their time bound passed."}, dec(func(s filter.DecisionCacheStats) uint64 { return s.Invalidations })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clearance_decision_cache_evictions_total",
			Help: "Cached decisions dropped for space (least recently used)."}, dec(func(s filter.DecisionCacheStats) uint64 { return s.Evictions })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clearance_decision_cache_entries",
			Help: "Decisions held by the decision cache."}, func() float64 { return float64(pl.DecisionCacheStats().Entries) }),
	)
}
