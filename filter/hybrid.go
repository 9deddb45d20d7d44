package filter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/retrieval"
)

// Hybrid search: each arm (vector, lexical) reads its own exact ranking under
// the same pre-filter, down to a depth; the two rankings are fused by
// reciprocal rank; and the fused list goes through the same post-filter as a
// vector search's pages (BatchCheck, HIGHER_CONSISTENCY, in rank order, in
// batches sized to what is still missing), so a hybrid search checks about as
// many tickets as a vector search. When the fused list holds fewer than k
// visible chunks, the depth grows and the fusion is redone (decisions are kept,
// so nothing is checked twice). The status keeps its meaning: complete is the
// exact visible top k of the fusion over that depth of each arm, each arm
// exact over the allowed rows; exhausted means fewer than k visible chunks
// exist (the vector arm, which ranks every allowed chunk, ran dry); partial
// means the budget ran out first or a store answered approximately.
// docs/decisions/hybrid-fusion.md.

// arm is one ranking of a hybrid search.
type arm struct {
	mode      Mode
	weight    float64
	hits      []retrieval.Hit // fetched so far, in rank order
	exhausted bool            // the store has no more
}

// hybrid runs both arms and fuses them.
func (r *run) hybrid(ctx context.Context) (Status, error) {
	cfg := r.pl.cfg
	fc := cfg.Fusion
	k := r.req.TopK
	depth := max(fc.Depth, k)
	if r.pf.path == PathPostfilterOnly {
		depth *= cfg.PostFilterOnlyFactor
	}
	arms := []*arm{{mode: ModeVector, weight: fc.VectorWeight}, {mode: ModeLexical, weight: fc.LexicalWeight}}
	denied := r.pf.plan.Denied
	for round := 0; ; round++ {
		// Each arm down to depth (a zero weight cannot move any fused score:
		// its reads are skipped).
		if err := r.readArms(ctx, arms, depth); err != nil {
			return "", err
		}
		list := r.fuse(arms, depth)
		// Each round decides the whole fused list again (from the decisions
		// already made); only the last round's is the answer and the record.
		r.results, r.returned, r.rec.Results, r.pf.plan.Denied = nil, map[string]bool{}, nil, denied
		if err := r.takeFused(ctx, list); err != nil {
			return "", err
		}
		if len(r.results) >= k {
			r.note(fc, depth)
			return Complete, nil
		}
		done := true
		for _, a := range arms {
			done = done && (a.weight == 0 || a.exhausted)
		}
		if done {
			r.note(fc, depth)
			return Exhausted, nil
		}
		switch {
		case round+1 >= cfg.MaxRounds:
			r.pf.plan.Notes = append(r.pf.plan.Notes, "budget: max rounds")
		case r.pf.plan.Fetched >= cfg.MaxCandidates:
			r.pf.plan.Notes = append(r.pf.plan.Notes, "budget: max candidates")
		case time.Since(r.start) >= cfg.Deadline:
			r.pf.plan.Notes = append(r.pf.plan.Notes, "budget: deadline")
		default:
			// Deeper by the observed yield, as the vector loop grows its pages.
			yield := float64(len(r.results)) / float64(max(1, len(list)))
			next := depth * 4
			if yield > 0 {
				next = int(math.Ceil(float64(depth) * float64(k) / float64(max(1, len(r.results))) * 1.5))
			}
			depth = min(max(next, depth+1), cfg.MaxCandidates/2)
			continue
		}
		r.note(fc, depth)
		return Partial, nil
	}
}

// readArms reads each arm that needs it down to depth. Two arms read at once:
// a hybrid search then waits about as long as its slower arm, not the sum.
// Their pages are accounted for in arm order, whichever finished first.
func (r *run) readArms(ctx context.Context, arms []*arm, depth int) error {
	type read struct {
		a   *arm
		n   int
		res retrieval.SearchResult
		err error
	}
	var reads []*read
	for _, a := range arms {
		if a.weight == 0 || a.exhausted || len(a.hits) >= depth {
			continue
		}
		reads = append(reads, &read{a: a, n: depth - len(a.hits)})
	}
	if len(reads) == 0 {
		return nil
	}
	t := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, rd := range reads[1:] {
		wg.Go(func() {
			rd.res, rd.err = r.query(ctx, rd.a.mode, rd.n, len(rd.a.hits))
			if rd.err != nil {
				cancel() // the answer is an error either way: stop the other arm
			}
		})
	}
	rd := reads[0]
	rd.res, rd.err = r.query(ctx, rd.a.mode, rd.n, len(rd.a.hits))
	if rd.err != nil {
		cancel()
	}
	wg.Wait()
	r.searchUS += since(t)
	var first error
	for _, rd := range reads {
		hits, err := r.record(rd.res, rd.err)
		if err != nil {
			// The arm that failed first, not the one it cancelled.
			if first == nil || errors.Is(first, context.Canceled) {
				first = err
			}
			continue
		}
		rd.a.hits = append(rd.a.hits, hits...)
		rd.a.exhausted = len(hits) < rd.n
	}
	return first
}

// note records the fusion parameters and each arm's candidates.
func (r *run) note(fc FusionConfig, depth int) {
	r.pf.plan.Notes = append(r.pf.plan.Notes, fmt.Sprintf("fusion: rrf k=%d depth=%d weights vector=%g lexical=%g", fc.K, depth, fc.VectorWeight, fc.LexicalWeight))
}

// fused is one entry of the fused ranking: a chunk, or a ticket with
// group_by_ticket (the arms may prefer different chunks of one ticket, and its
// ranks must add up all the same; the shown chunk is the vector arm's when it
// found the ticket).
type fused struct {
	h     retrieval.Hit
	score float64
	arms  []armHit
}

// armHit is where an arm ranked a fused entry.
type armHit struct {
	arm   Mode
	rank  int
	score float32
}

// fuse combines the arms' first depth hits by reciprocal rank: an entry at
// rank r (from 1) of an arm gains weight/(K+r).
func (r *run) fuse(arms []*arm, depth int) []*fused {
	c := float64(r.pl.cfg.Fusion.K)
	type key struct {
		id  string
		ord int
	}
	byKey := map[key]*fused{}
	var list []*fused
	for _, a := range arms {
		if a.weight == 0 {
			continue
		}
		rank := 0
		seen := map[string]bool{}
		for _, h := range a.hits[:min(depth, len(a.hits))] {
			kk := key{h.TicketID, h.Ordinal}
			if r.req.GroupByTicket {
				if seen[h.TicketID] {
					continue
				}
				seen[h.TicketID] = true
				kk.ord = -1
			}
			rank++
			f := byKey[kk]
			if f == nil {
				f = &fused{h: h}
				byKey[kk] = f
				list = append(list, f)
			}
			f.score += a.weight / (c + float64(rank))
			f.arms = append(f.arms, armHit{arm: a.mode, rank: rank, score: h.Score})
		}
	}
	slices.SortFunc(list, func(a, b *fused) int {
		if a.score != b.score {
			return cmp.Compare(b.score, a.score)
		}
		return cmp.Or(strings.Compare(a.h.TicketID, b.h.TicketID), cmp.Compare(a.h.Ordinal, b.h.Ordinal))
	})
	return list
}

// takeFused checks the fused list in order, in batches sized to what is still
// needed (as take does for a vector page), and decides each entry.
func (r *run) takeFused(ctx context.Context, list []*fused) error {
	return r.takeInOrder(ctx, len(list), func(i int) retrieval.Hit { return list[i].h }, func(i int) { r.decideFused(list[i]) })
}

// decideFused records one fused entry (with each arm's rank and score as
// separate candidates) and returns it when allowed and needed.
func (r *run) decideFused(f *fused) {
	h := f.h
	if h.Tenant != r.p.Tenant {
		r.pl.cfg.Logger.Warn("filter: store returned a hit of another tenant", "ticket", h.TicketID)
		return
	}
	c := audit.Candidate{TicketID: h.TicketID, Project: h.Project, Chunk: h.Ordinal, Score: float32(f.score), Arm: "fused"}
	c.Decision = r.admit(h, float32(f.score))
	// The arms' rows say what the checks decided, not where the fused hit landed.
	armDecision := audit.Allowed
	if c.Decision == audit.NotChecked || c.Decision == audit.DeniedByCheck {
		armDecision = c.Decision
	}
	r.rec.Results = append(r.rec.Results, c)
	for _, ah := range f.arms {
		r.rec.Results = append(r.rec.Results, audit.Candidate{TicketID: h.TicketID, Project: h.Project, Chunk: h.Ordinal,
			Score: ah.score, Arm: string(ah.arm), Decision: armDecision})
	}
}
