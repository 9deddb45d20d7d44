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
	margin    float64         // the lexical margin of the last fusion (1: none)
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
			r.note(fc, depth, arms)
			return Complete, nil
		}
		done := true
		for _, a := range arms {
			done = done && (a.weight == 0 || a.exhausted)
		}
		if done {
			r.note(fc, depth, arms)
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
		r.note(fc, depth, arms)
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

// note records the fusion parameters and the lexical margin applied.
func (r *run) note(fc FusionConfig, depth int, arms []*arm) {
	n := fmt.Sprintf("fusion: rrf k=%d depth=%d weights vector=%g lexical=%g", fc.K, depth, fc.VectorWeight, fc.LexicalWeight)
	if fc.RanksOnly {
		n += " ranks only"
	} else {
		for _, a := range arms {
			if a.mode == ModeLexical && a.weight > 0 {
				n += fmt.Sprintf(" lexical margin=%.3g", a.margin)
			}
		}
	}
	r.pf.plan.Notes = append(r.pf.plan.Notes, n)
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
// rank r (from 1) of an arm gains weight/(K+r), the lexical arm's weight times
// its margin (lexicalMargin) unless the config fuses ranks only.
func (r *run) fuse(arms []*arm, depth int) []*fused {
	fc := r.pl.cfg.Fusion
	c := float64(fc.K)
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
		w := a.weight
		a.margin = 1
		if a.mode == ModeLexical && !fc.RanksOnly {
			a.margin = lexicalMargin(a.hits[:min(depth, len(a.hits))])
			w *= a.margin
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
			f.score += w / (c + float64(rank))
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

// lexicalMargin is how far the lexical arm's top hit stands from the rest:
// its BM25 score over the best score of another ticket among hits (the arm's
// fused depth, in rank order), at least 1; 1 when no other ticket matched.
//
// Why: reciprocal rank throws scores away, so a ticket that only the lexical
// arm finds, first by a wide margin because it holds a very rare term (a
// customer name, an error code, its own key), ties with or loses to a ticket
// both arms rank moderately for a common word of the same query. BM25 is a
// sum of per-term evidence under the search's own statistics, so the ratio
// says how many times the evidence of any other ticket the top hit carries;
// it is a pure number of the arm's own page (no calibration against cosine,
// no statistics beyond the filter's: docs/decisions/lexical-statistics.md).
// Near 1 (topical queries, where many tickets hold the words) fusion is the
// plain weighted reciprocal rank; far above 1 the lexical order leads.
func lexicalMargin(hits []retrieval.Hit) float64 {
	if len(hits) == 0 || hits[0].Score <= 0 {
		return 1
	}
	for _, h := range hits[1:] {
		if h.TicketID != hits[0].TicketID {
			if h.Score <= 0 {
				return 1
			}
			return max(1, float64(hits[0].Score)/float64(h.Score))
		}
	}
	return 1
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
