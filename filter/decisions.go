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
// revision only: a request that reads a different revision first drops every
// entry the writes in between may have changed (at). Equal revisions mean no
// write committed in between, through any replica (authz.Revisioned), so an
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
	// changes, when the engine has it, names what changed between two
	// revisions, so that a move drops only the tickets changed.
	changes authz.ChangeLister

	mu    sync.Mutex
	state decisionState // every entry was computed at it
	order *list.List
	items map[string]*list.Element
	// byTicket indexes the entries of each ticket (targeted invalidation).
	byTicket map[string]map[*list.Element]struct{}

	hits, misses, invalidations, evictions atomic.Uint64
}

// decisionState is what a request reads at: the model and the revision it
// probed before its first engine call. The zero value means no caching.
type decisionState struct {
	model string
	rev   authz.Revision
}

func (s decisionState) ok() bool { return s.rev.Key != "" }

type decisionEntry struct {
	key     string
	ticket  string // "" for the agent grants' bound
	allowed bool
	// The answer holds for request times in [from, until); a zero until is no
	// bound.
	from, until time.Time
}

func newDecisionCache(max int, changes authz.ChangeLister) *decisionCache {
	return &decisionCache{max: max, changes: changes, order: list.New(), items: map[string]*list.Element{}, byTicket: map[string]map[*list.Element]struct{}{}}
}

func (c *decisionCache) enabled() bool { return c.max > 0 }

// at makes state the cache's state. Called with c.mu held.
//
// Moving to another revision of the same model keeps the entries of every
// ticket the writes in between did not touch, when the engine can name those
// writes' objects and all of them are tickets: in our model no relation of any
// type reads a ticket's tuples but the ticket's own (ticket is no type's user
// type, directly or in a tupleset; TestModelConditions checks it), so a
// change to ticket:X can alter decisions on X only. Anything else (a change to
// a project, team, tenant, delegation or service account, which can alter
// decisions on any ticket; writes the engine cannot name; another model; an
// older revision) drops every entry.
func (c *decisionCache) at(state decisionState) {
	if c.state == state {
		return
	}
	prev := c.state
	c.state = state
	if prev.ok() && prev.model == state.model && c.changes != nil {
		if objs, ok := c.changes.ChangedObjects(prev.rev, state.rev); ok && allTickets(objs) {
			for _, o := range objs {
				c.dropTicket(strings.TrimPrefix(o, "ticket:"))
			}
			// Ticket reads' entries go with any write (filter/get.go).
			c.dropTicket(getEntries)
			return
		}
	}
	c.invalidations.Add(uint64(c.order.Len()))
	c.order.Init()
	clear(c.items)
	clear(c.byTicket)
}

func allTickets(objs []string) bool {
	for _, o := range objs {
		if !strings.HasPrefix(o, "ticket:") {
			return false
		}
	}
	return true
}

// dropTicket removes every entry of ticket id. Called with c.mu held.
func (c *decisionCache) dropTicket(id string) {
	for e := range c.byTicket[id] {
		c.order.Remove(e)
		delete(c.items, e.Value.(*decisionEntry).key)
		c.invalidations.Add(1)
	}
	delete(c.byTicket, id)
}

// remove drops one element. Called with c.mu held.
func (c *decisionCache) remove(e *list.Element) {
	ent := e.Value.(*decisionEntry)
	c.order.Remove(e)
	delete(c.items, ent.key)
	if set := c.byTicket[ent.ticket]; set != nil {
		delete(set, e)
		if len(set) == 0 {
			delete(c.byTicket, ent.ticket)
		}
	}
}

// get answers the keys it holds for state at time now; found[i] says whether
// allowed[i] is an answer.
func (c *decisionCache) get(state decisionState, keys []string, now time.Time) (allowed, found []bool) {
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
func (c *decisionCache) entry(state decisionState, key string, now time.Time) (decisionEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookup(state, key, now)
}

// lookup finds key's entry at state, valid at now. Called with c.mu held.
func (c *decisionCache) lookup(state decisionState, key string, now time.Time) (decisionEntry, bool) {
	c.at(state)
	e, ok := c.items[key]
	if !ok {
		return decisionEntry{}, false
	}
	ent := e.Value.(*decisionEntry)
	if now.Before(ent.from) || (!ent.until.IsZero() && !now.Before(ent.until)) {
		// Outside the interval the answer was proven for: ask again.
		c.remove(e)
		c.invalidations.Add(1)
		return decisionEntry{}, false
	}
	c.order.MoveToFront(e)
	return *ent, true
}

// put keeps entries computed at state. Entries of a state the cache has moved
// past (a slower request) are dropped.
func (c *decisionCache) put(state decisionState, ents []decisionEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != state {
		return
	}
	for _, ent := range ents {
		ent := ent
		if e, ok := c.items[ent.key]; ok {
			c.remove(e)
		}
		e := c.order.PushFront(&ent)
		c.items[ent.key] = e
		if ent.ticket != "" {
			set := c.byTicket[ent.ticket]
			if set == nil {
				set = map[*list.Element]struct{}{}
				c.byTicket[ent.ticket] = set
			}
			set[e] = struct{}{}
		}
	}
	for c.order.Len() > c.max {
		c.remove(c.order.Back())
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
	grants, err := readDelegationGrants(ctx, rd, p)
	if err != nil {
		return time.Time{}, err
	}
	return grantsBound(grants, now)
}

// grantsBound is the earliest expires_at after now among the not_expired
// grants (zero when none expires after now), or errNoBound when a grant
// carries a condition or an expiry it does not understand.
func grantsBound(grants []authz.Tuple, now time.Time) (time.Time, error) {
	var until time.Time
	for _, t := range grants {
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

// cachedChecks splits ids into those the cache answers (recorded in decided)
// and those still to ask the engine.
func (r *run) cachedChecks(ids []string) []string {
	if !r.decisionState.ok() {
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
	if !r.decisionState.ok() {
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
		e := decisionEntry{key: r.decisionPrefix + "t:" + id, ticket: id, allowed: ok[i], from: r.now}
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
	if r.pf.grantsRead && r.pf.rev == r.decisionState.rev {
		// Read with the listing, after this request's probe (or cached under
		// the same revision): the same tuples a read now would return at
		// this revision, without another engine call.
		return grantsBound(r.pf.grants, r.now)
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
