package filter

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clearance-dev/clearance/authz"
)

// The post-filter's decision cache (docs/decisions/decision-cache.md).
//
// An entry is one answer of the engine for (model, principal kind, subject,
// relation, contextual tuples, ticket), computed at the tuple revision the
// request read before its first engine call. The cache holds the entries of one
// revision only: a request that reads a different revision drops every entry
// first (a change to any tuple can alter decisions on many tickets in our model,
// so nothing finer is exact without the change's tuples). Equal revisions mean
// no write committed in between, through any replica (authz.Revisioned), so an
// entry answers exactly what a HIGHER_CONSISTENCY check would at that
// revision, except for time: an entry also carries the interval of request
// times over which the answer cannot change (see decisionBounds).

// DecisionCacheStats counts the decision cache's work since the planner started.
type DecisionCacheStats struct {
	// Hits and Misses are per ticket looked up.
	Hits, Misses uint64
	// Invalidations counts entries dropped because the revision moved (or a
	// time bound passed); Evictions those dropped for space.
	Invalidations, Evictions uint64
	// Entries is the number of entries held now.
	Entries int
}

type decisionCache struct {
	max int // entries; < 0 disables

	mu    sync.Mutex
	state string // revision and model every entry was computed at
	order *list.List
	items map[string]*list.Element

	hits, misses, invalidations, evictions atomic.Uint64
}

type decisionEntry struct {
	key     string
	allowed bool
	// The answer holds for request times in [from, until); a zero until is no
	// bound.
	from, until time.Time
}

func newDecisionCache(max int) *decisionCache {
	return &decisionCache{max: max, order: list.New(), items: map[string]*list.Element{}}
}

func (c *decisionCache) enabled() bool { return c.max > 0 }

// at makes state the cache's revision, dropping every entry of another one.
// Called with c.mu held.
func (c *decisionCache) at(state string) {
	if c.state == state {
		return
	}
	c.invalidations.Add(uint64(c.order.Len()))
	c.order.Init()
	clear(c.items)
	c.state = state
}

// get answers the keys it holds for state at time now; found[i] says whether
// allowed[i] is an answer.
func (c *decisionCache) get(state string, keys []string, now time.Time) (allowed, found []bool) {
	allowed, found = make([]bool, len(keys)), make([]bool, len(keys))
	c.mu.Lock()
	defer c.mu.Unlock()
	var hits uint64
	for i, k := range keys {
		if ent, ok := c.lookup(state, k, now); ok {
			allowed[i], found[i] = ent.allowed, true
			hits++
		}
	}
	c.hits.Add(hits)
	c.misses.Add(uint64(len(keys)) - hits)
	return allowed, found
}

// entry is get for one key, without counting it.
func (c *decisionCache) entry(state, key string, now time.Time) (decisionEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookup(state, key, now)
}

// lookup finds key's entry at state, valid at now. Called with c.mu held.
func (c *decisionCache) lookup(state, key string, now time.Time) (decisionEntry, bool) {
	c.at(state)
	e, ok := c.items[key]
	if !ok {
		return decisionEntry{}, false
	}
	ent := e.Value.(*decisionEntry)
	if now.Before(ent.from) || (!ent.until.IsZero() && !now.Before(ent.until)) {
		// Outside the interval the answer was proven for: ask again.
		c.order.Remove(e)
		delete(c.items, key)
		c.invalidations.Add(1)
		return decisionEntry{}, false
	}
	c.order.MoveToFront(e)
	return *ent, true
}

// put keeps entries computed at state. Entries of a revision the cache has
// moved past (a slower request) are dropped.
func (c *decisionCache) put(state string, ents []decisionEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != state {
		return
	}
	for _, ent := range ents {
		ent := ent
		if e, ok := c.items[ent.key]; ok {
			e.Value = &ent
			c.order.MoveToFront(e)
			continue
		}
		c.items[ent.key] = c.order.PushFront(&ent)
	}
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*decisionEntry).key)
		c.evictions.Add(1)
	}
}

func (c *decisionCache) stats() DecisionCacheStats {
	c.mu.Lock()
	n := c.order.Len()
	c.mu.Unlock()
	return DecisionCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Invalidations: c.invalidations.Load(), Evictions: c.evictions.Load(), Entries: n}
}

// DecisionCacheStats reports the post-filter decision cache's counters.
func (pl *Planner) DecisionCacheStats() DecisionCacheStats { return pl.decisions.stats() }

// decisionPrefix is the part of a decision key shared by one principal's
// checks: everything the engine's answers depend on besides the ticket and the
// tuples (covered by the revision) and the time (covered by the entry's
// interval): the user and relation of every view check (a service account's
// key minter adds one) and the contextual tuples. The kind and tenant are not
// inputs of the checks; they are kept anyway so that no entry is ever shared
// across kinds or tenants.
func decisionPrefix(p authz.Principal) string {
	var b strings.Builder
	for _, s := range []string{string(p.Kind), p.Tenant} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for _, c := range p.ViewChecks("") {
		b.WriteString(c.User + "#" + c.Relation)
		b.WriteByte(0)
	}
	for _, t := range p.ContextualTuples() {
		b.WriteString(t.String())
		b.WriteByte(0)
	}
	return b.String()
}

// tupleReader reads stored tuples; authz.Engine has it. The planner needs it to
// bound cached agent decisions by their grants' expiry.
type tupleReader interface {
	Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error]
}

// errNoBound: the grants' expiry could not be read or understood; the allowed
// answers are not cached.
var errNoBound = errors.New("no time bound")

// decisionBounds returns the interval of request times over which answers
// computed at time now for p stay what they are, as [now, until) for allowed
// answers and [now, forever) for denied ones.
//
// Why (authz/model.fga): the only conditioned tuples are project#granted from
// a delegation (not_expired: current_time < expires_at), and the only relation
// that reaches them is agent_can_view (through delegated). So can_view, which
// users and service accounts are checked on, does not depend on the time at
// all: until is zero. For agents, not_expired only ever turns from true to
// false as time passes and sits under no exclusion ("but not"), so
// agent_can_view can only turn from allowed to denied: a denial holds for every
// later time; an allowance holds until the earliest expiry, after now, of the
// delegation's conditioned grants (a grant of another delegation cannot count:
// activated requires this delegation's own active tuple). TestModelConditions
// checks these facts on the model.
func (pl *Planner) decisionBounds(ctx context.Context, p authz.Principal, now time.Time) (time.Time, error) {
	if p.Kind != authz.KindAgent {
		return time.Time{}, nil
	}
	rd, ok := pl.eng.(tupleReader)
	if !ok {
		return time.Time{}, errNoBound
	}
	var until time.Time
	f := authz.TupleFilter{User: "delegation:" + authz.DelegationID(p.User, p.Agent), Relation: "granted", Object: "project:"}
	for t, err := range rd.Read(ctx, f) {
		if err != nil {
			return time.Time{}, err
		}
		if t.Condition == nil {
			continue
		}
		if t.Condition.Name != "not_expired" {
			return time.Time{}, fmt.Errorf("%w: condition %q", errNoBound, t.Condition.Name)
		}
		s, _ := t.Condition.Context["expires_at"].(string)
		exp, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: expires_at %q", errNoBound, s)
		}
		if exp.After(now) && (until.IsZero() || exp.Before(until)) {
			until = exp
		}
	}
	if until.IsZero() {
		// No grant expires after now: nothing can turn an allowance into a
		// denial but a tuple change, which moves the revision.
		return time.Time{}, nil
	}
	return until, nil
}

// decisionState is the cache state a request reads at: the model and the
// revision it probed before its first engine call. Empty means no caching.
func decisionState(modelID string, rev string) string {
	if rev == "" {
		return ""
	}
	return modelID + "\x00" + rev
}

// cachedChecks splits ids into those the cache answers (recorded in decided)
// and those still to ask the engine.
func (r *run) cachedChecks(ids []string) []string {
	if r.decisionState == "" {
		return ids
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.decisionPrefix + "t:" + id
	}
	allowed, found := r.pl.decisions.get(r.decisionState, keys, r.now)
	var ask []string
	for i, id := range ids {
		if !found[i] {
			ask = append(ask, id)
			continue
		}
		r.decided[id] = allowed[i]
		if allowed[i] {
			r.allowed++
		}
		r.cachedN++
	}
	return ask
}

// keepChecks stores the engine's answers for ids.
func (r *run) keepChecks(ctx context.Context, ids []string, ok []bool) {
	if r.decisionState == "" {
		return
	}
	var until time.Time
	boundKnown := true
	if slices.Contains(ok, true) {
		if !r.boundRead {
			r.bound, r.boundErr = r.decisionBounds(ctx)
			r.boundRead = true
			if r.boundErr != nil {
				r.pl.cfg.Logger.Debug("filter: agent grants' expiry unknown: allowed decisions not cached", "err", r.boundErr)
			}
		}
		until, boundKnown = r.bound, r.boundErr == nil
	}
	ents := make([]decisionEntry, 0, len(ids))
	for i, id := range ids {
		if ok[i] && !boundKnown {
			continue
		}
		e := decisionEntry{key: r.decisionPrefix + "t:" + id, allowed: ok[i], from: r.now}
		if ok[i] {
			e.until = until
		}
		ents = append(ents, e)
	}
	r.pl.decisions.put(r.decisionState, ents)
}

// decisionBounds is Planner.decisionBounds for this request, itself cached: the
// bound read at time from holds for every request time in [from, bound) at the
// same revision (no grant expires in between, so the first expiry after such a
// time is the same one), which is exactly an entry's validity.
func (r *run) decisionBounds(ctx context.Context) (time.Time, error) {
	if r.p.Kind != authz.KindAgent {
		return time.Time{}, nil
	}
	key := r.decisionPrefix + "grants"
	if e, ok := r.pl.decisions.entry(r.decisionState, key, r.now); ok {
		return e.until, nil
	}
	until, err := r.pl.decisionBounds(ctx, r.p, r.now)
	if err == nil {
		r.pl.decisions.put(r.decisionState, []decisionEntry{{key: key, allowed: true, from: r.now, until: until}})
	}
	return until, err
}
