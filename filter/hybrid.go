package filter

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/retrieval"
)

// Hybrid search: each arm (vector, lexical) pages through its own exact
// ranking under the same pre-filter, and every candidate goes through the same
// post-filter (BatchCheck, HIGHER_CONSISTENCY) before it counts. Each arm
// stops once it has Fusion.Depth visible chunks (at least top_k) or has no
// more; the visible chunks are then fused by reciprocal rank, so a rank is a
// position among what the caller may see, never among hidden tickets. The
// status keeps its meaning: complete is the exact fused top-k of the visible
// chunks over that depth of each arm; exhausted means fewer than k visible
// chunks exist; partial means an arm ran out of budget first (or a store
// answered approximately).

// arm is one ranking of a hybrid search.
type arm struct {
	mode    Mode
	weight  float64
	offset  int
	rounds  int
	fetched int
	hits    []retrieval.Hit // every hit fetched, in rank order (for the audit record)
	visible []retrieval.Hit // allowed, eligible hits in rank order, at most depth
	tickets map[string]bool // tickets in visible (group_by_ticket)
	cut     bool            // the budget stopped it
}

// hybrid runs both arms and fuses them.
func (r *run) hybrid(ctx context.Context) (Status, error) {
	fc := r.pl.cfg.Fusion
	depth := max(fc.Depth, r.req.TopK)
	arms := []*arm{
		{mode: ModeVector, weight: fc.VectorWeight, tickets: map[string]bool{}},
		{mode: ModeLexical, weight: fc.LexicalWeight, tickets: map[string]bool{}},
	}
	r.pf.plan.Notes = append(r.pf.plan.Notes, fmt.Sprintf("fusion: rrf k=%d depth=%d weights vector=%g lexical=%g", fc.K, depth, fc.VectorWeight, fc.LexicalWeight))
	for _, a := range arms {
		if a.weight == 0 {
			continue // a zero weight cannot move any fused score: skip its reads
		}
		if err := r.collect(ctx, a, depth); err != nil {
			return "", err
		}
	}
	r.fuse(arms)
	for _, a := range arms {
		r.recordArm(a)
	}
	switch {
	case arms[0].cut || arms[1].cut:
		return Partial, nil
	case len(r.results) >= r.req.TopK:
		return Complete, nil
	default:
		return Exhausted, nil
	}
}

// collect pages through one arm until it has depth visible chunks, has no
// more, or its budget (rounds, candidates, the request's deadline) is spent.
func (r *run) collect(ctx context.Context, a *arm, depth int) error {
	cfg := r.pl.cfg
	fetch := max(cfg.MinFetch, 2*depth)
	if r.pf.path == PathPostfilterOnly {
		fetch *= cfg.PostFilterOnlyFactor
	}
	for round := 0; ; round++ {
		switch {
		case round >= cfg.MaxRounds:
			r.pf.plan.Notes = append(r.pf.plan.Notes, "budget: max rounds ("+string(a.mode)+" arm)")
			a.cut = true
			return nil
		case a.fetched >= cfg.MaxCandidates:
			r.pf.plan.Notes = append(r.pf.plan.Notes, "budget: max candidates ("+string(a.mode)+" arm)")
			a.cut = true
			return nil
		case round > 0 && time.Since(r.start) >= cfg.Deadline:
			r.pf.plan.Notes = append(r.pf.plan.Notes, "budget: deadline ("+string(a.mode)+" arm)")
			a.cut = true
			return nil
		}
		n := min(fetch, cfg.MaxCandidates-a.fetched)
		hits, err := r.fetch(ctx, a.mode, n, a.offset)
		if err != nil {
			return err
		}
		a.rounds++
		a.fetched += len(hits)
		a.offset += len(hits)
		if err := r.takeArm(ctx, a, hits, depth); err != nil {
			return err
		}
		if len(a.visible) >= depth || len(hits) < n {
			return nil
		}
		need := depth - len(a.visible)
		yield := float64(len(a.visible)) / float64(a.fetched)
		if yield == 0 {
			fetch *= 4
		} else {
			fetch = max(cfg.MinFetch, int(math.Ceil(float64(need)/yield*1.5)))
		}
	}
}

// takeArm checks one page of an arm in rank order, in batches sized to what is
// still needed (as take does), and keeps the visible hits up to depth.
func (r *run) takeArm(ctx context.Context, a *arm, hits []retrieval.Hit, depth int) error {
	i := 0
	for i < len(hits) && len(a.visible) < depth {
		need := depth - len(a.visible)
		want := need
		if r.checked > 0 || r.pf.path == PathPostfilterOnly {
			rate := float64(r.allowed+1) / float64(r.checked+1)
			want = int(math.Ceil(float64(need)/max(rate, 0.05)*1.25)) + 1
		}
		var batch []string
		inBatch := map[string]bool{}
		j := i
		for ; j < len(hits) && len(batch) < want; j++ {
			id := hits[j].TicketID
			if _, ok := r.decided[id]; ok || inBatch[id] || !r.eligible(hits[j]) {
				continue
			}
			inBatch[id] = true
			batch = append(batch, id)
		}
		if err := r.check(ctx, batch); err != nil {
			return err
		}
		for ; i < j; i++ {
			r.keep(a, hits[i], depth)
		}
	}
	for ; i < len(hits); i++ {
		a.hits = append(a.hits, hits[i])
	}
	return nil
}

// keep records a hit of an arm and adds it to the arm's visible ranking when
// allowed and still needed.
func (r *run) keep(a *arm, h retrieval.Hit, depth int) {
	a.hits = append(a.hits, h)
	if h.Tenant != r.p.Tenant || !r.eligible(h) || !r.decided[h.TicketID] || len(a.visible) >= depth {
		return
	}
	if r.req.GroupByTicket {
		if a.tickets[h.TicketID] {
			return
		}
		a.tickets[h.TicketID] = true
	}
	a.visible = append(a.visible, h)
}

// fused is one chunk of the fused ranking.
type fused struct {
	h     retrieval.Hit
	score float64
}

// fuse combines the arms' visible rankings by reciprocal rank and returns the
// top k (per ticket with group_by_ticket, otherwise per chunk).
func (r *run) fuse(arms []*arm) {
	k := float64(r.pl.cfg.Fusion.K)
	type key struct {
		id  string
		ord int
	}
	byKey := map[key]*fused{}
	var list []*fused
	for _, a := range arms {
		for rank, h := range a.visible {
			kk := key{h.TicketID, h.Ordinal}
			if r.req.GroupByTicket {
				// Fused per ticket: the arms may prefer different chunks of one
				// ticket, and its ranks must add up all the same. The shown
				// chunk is the first arm's (vector's when it found the ticket).
				kk.ord = -1
			}
			f := byKey[kk]
			if f == nil {
				f = &fused{h: h}
				byKey[kk] = f
				list = append(list, f)
			}
			f.score += a.weight / (k + float64(rank+1))
		}
	}
	slices.SortFunc(list, func(a, b *fused) int {
		if a.score != b.score {
			return cmp.Compare(b.score, a.score)
		}
		return cmp.Or(strings.Compare(a.h.TicketID, b.h.TicketID), cmp.Compare(a.h.Ordinal, b.h.Ordinal))
	})
	for _, f := range list {
		h := f.h
		c := audit.Candidate{TicketID: h.TicketID, Project: h.Project, Chunk: h.Ordinal, Score: float32(f.score), Arm: "fused"}
		if len(r.results) >= r.req.TopK || (r.req.GroupByTicket && r.returned[h.TicketID]) {
			c.Decision = audit.BeyondK
		} else {
			c.Decision = audit.Returned
			r.returned[h.TicketID] = true
			r.results = append(r.results, Result{
				TicketID: h.TicketID, ProjectID: h.Project, TenantID: h.Tenant, Title: h.Title,
				Snippet: snippet(h.Text, r.pl.cfg.SnippetChars), Chunk: h.Ordinal, Score: float32(f.score),
			})
		}
		r.rec.Results = append(r.rec.Results, c)
	}
}

// recordArm adds an arm's candidates to the audit record with the arm's own
// score and the check's decision.
func (r *run) recordArm(a *arm) {
	for _, h := range a.hits {
		if h.Tenant != r.p.Tenant {
			r.pl.cfg.Logger.Warn("filter: store returned a hit of another tenant", "ticket", h.TicketID, "arm", string(a.mode))
			continue
		}
		c := audit.Candidate{TicketID: h.TicketID, Project: h.Project, Chunk: h.Ordinal, Score: h.Score, Arm: string(a.mode)}
		allowed, checked := r.decided[h.TicketID]
		switch {
		case !r.eligible(h) || !checked:
			c.Decision = audit.NotChecked
		case !allowed:
			c.Decision = audit.DeniedByCheck
			r.pf.plan.Denied++
		default:
			c.Decision = audit.Allowed
		}
		r.rec.Results = append(r.rec.Results, c)
	}
}
