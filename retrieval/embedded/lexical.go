package embedded

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// The lexical arm lives next to the vectors, partitioned the same way: each
// (tenant, project) partition has its own postings, so a filtered search reads
// only the postings of allowed partitions (plus the documents of directly named
// tickets), and a ticket's postings change in the same locked step as its rows.
// Nothing of it is persisted: it is derived from the ticket text the log and
// snapshots already hold, so replay rebuilds it and it can never disagree with
// the vectors after a crash.
//
// The representation is compact and free of pointers where it is large (docs/
// decisions/embedded-store-layout.md): terms are interned once per store into
// uint32 ids, a chunk's document is a sorted run of (id, tf) pairs in its
// ticket, and a posting is (document slot, tf) into its partition's slot
// arrays. At a million chunks that is tens of millions of postings the garbage
// collector never has to scan, and one string per distinct term instead of one
// per (chunk, term).

// termDict interns terms store-wide. refs counts the live documents holding a
// term; an id is freed (and reused) when the count drops to zero, which is
// exactly when every partition has dropped its postings for it, so a reused id
// never meets a stale posting.
type termDict struct {
	ids   map[string]uint32
	terms []string // by id; "" when free
	refs  []int32
	free  []uint32
}

func newTermDict() *termDict { return &termDict{ids: map[string]uint32{}} }

func (d *termDict) intern(t string) uint32 {
	id, ok := d.ids[t]
	if !ok {
		if n := len(d.free); n > 0 {
			id = d.free[n-1]
			d.free = d.free[:n-1]
			d.terms[id] = t
		} else {
			id = uint32(len(d.terms))
			d.terms = append(d.terms, t)
			d.refs = append(d.refs, 0)
		}
		d.ids[t] = id
	}
	d.refs[id]++
	return id
}

func (d *termDict) release(id uint32) {
	if d.refs[id]--; d.refs[id] > 0 {
		return
	}
	delete(d.ids, d.terms[id])
	d.terms[id] = ""
	d.free = append(d.free, id)
}

// lexTerm is one distinct term of a document: its id and weighted frequency.
type lexTerm struct {
	id uint32
	tf float32
}

// lexTicket is the lexical form of a ticket's chunks: chunk k's terms are
// terms[end[k-1]:end[k]], sorted by id; slot[k] is its document slot in the
// ticket's partition.
type lexTicket struct {
	terms []lexTerm
	end   []int32
	dl    []float32
	slot  []int32
}

func (lt *lexTicket) chunk(k int) []lexTerm {
	lo := int32(0)
	if k > 0 {
		lo = lt.end[k-1]
	}
	return lt.terms[lo:lt.end[k]]
}

// tf returns the weighted frequency of term id in chunk k (0 if absent).
func (lt *lexTicket) tf(k int, id uint32) float32 {
	ts := lt.chunk(k)
	i, ok := slices.BinarySearchFunc(ts, id, func(t lexTerm, id uint32) int {
		switch {
		case t.id < id:
			return -1
		case t.id > id:
			return 1
		}
		return 0
	})
	if !ok {
		return 0
	}
	return ts[i].tf
}

type posting struct {
	doc uint32 // slot in the partition
	tf  float32
}

// termList is one term's postings in a partition, arena[off:off+n] with room
// for cap; df counts the live ones (the others are dead). maxTF is at least
// the term's frequency in every live document (a removal leaves it as it was;
// it is recomputed when the list is compacted), for the partition's score
// bound.
type termList struct {
	df          int32
	off, n, cap uint32
	maxTF       float32
}

// docRef names the chunk of a document slot.
type docRef struct {
	t *ticket
	k int32
}

// lexPart is one partition's postings and statistics. Document slots are
// stable while any posting names them: a removed document's slot is marked
// dead (dl < 0) and counts the postings still naming it; it is reused once
// they are all dropped.
type lexPart struct {
	// The postings of all terms share one arena, so neither the map nor the
	// arena holds a pointer: the garbage collector skips both. A list that
	// outgrows its room moves to the arena's end, leaving a hole; the arena
	// is rebuilt once holes are a third of it.
	terms   map[uint32]termList
	arena   []posting
	holes   int
	dl      []float32 // by slot; negative: dead
	docs    []docRef  // by slot
	pending []int32   // by dead slot: postings still naming it
	free    []int32
	live    int
	sumDL   float64
	// minDL is at most the length of every live document (a removal leaves it
	// as it was; renumbering recomputes it), for the partition's score bound.
	minDL    float32
	shrinks  int // renumberings so far (for tests)
	rebuilds int // arena rebuilds so far (for tests)
}

func newLexPart() *lexPart {
	return &lexPart{terms: map[uint32]termList{}, minDL: float32(math.Inf(1))}
}

// lexDocs analyzes a ticket's chunks (outside any lock when called from
// validate).
func lexDocs(t retrieval.Ticket, texts []string) []lexical.Doc {
	out := make([]lexical.Doc, len(texts))
	for i, s := range texts {
		out[i] = lexical.Analyze(t.ID, t.Title, s)
	}
	return out
}

// intern turns analyzed documents into tk's lexical form, interning their
// terms (one reference per document and term).
func (ix *index) intern(tk *ticket, docs []lexical.Doc) {
	n := 0
	for _, d := range docs {
		n += len(d.Terms)
	}
	lt := &lexTicket{terms: make([]lexTerm, 0, n), end: make([]int32, len(docs)), dl: make([]float32, len(docs))}
	for k, d := range docs {
		start := len(lt.terms)
		for _, t := range d.Terms {
			lt.terms = append(lt.terms, lexTerm{id: ix.dict.intern(t.Term), tf: t.TF})
		}
		slices.SortFunc(lt.terms[start:], func(a, b lexTerm) int { return cmp.Compare(a.id, b.id) })
		lt.end[k] = int32(len(lt.terms))
		lt.dl[k] = d.Len
	}
	tk.lex = lt
}

// release drops tk's references to its terms.
func (ix *index) release(tk *ticket) {
	if tk.lex == nil {
		return
	}
	for _, t := range tk.lex.terms {
		ix.dict.release(t.id)
	}
	tk.lex = nil
}

// add indexes tk's documents in lp.
func (lp *lexPart) add(tk *ticket) {
	lt := tk.lex
	lt.slot = make([]int32, len(lt.end))
	for k := range lt.end {
		var s int32
		if n := len(lp.free); n > 0 {
			s = lp.free[n-1]
			lp.free = lp.free[:n-1]
			lp.dl[s], lp.docs[s], lp.pending[s] = lt.dl[k], docRef{t: tk, k: int32(k)}, 0
		} else {
			s = int32(len(lp.dl))
			lp.dl = append(lp.dl, lt.dl[k])
			lp.docs = append(lp.docs, docRef{t: tk, k: int32(k)})
			lp.pending = append(lp.pending, 0)
		}
		lt.slot[k] = s
		for _, t := range lt.chunk(k) {
			tl := lp.terms[t.id]
			tl.df++
			tl.maxTF = max(tl.maxTF, t.tf)
			lp.push(&tl, posting{doc: uint32(s), tf: t.tf})
			lp.terms[t.id] = tl
		}
		lp.minDL = min(lp.minDL, lt.dl[k])
		lp.live++
		lp.sumDL += float64(lt.dl[k])
	}
	lp.maybeCompact()
}

// list returns tl's postings.
func (lp *lexPart) list(tl termList) []posting { return lp.arena[tl.off : tl.off+tl.n] }

// push appends p to tl's postings, moving them to the arena's end (or
// growing them there in place) when they are out of room.
func (lp *lexPart) push(tl *termList, p posting) {
	if tl.n == tl.cap {
		c := max(2, 2*tl.cap)
		if tl.cap > 0 && int(tl.off+tl.cap) == len(lp.arena) {
			lp.arena = extend(lp.arena, int(c-tl.cap))
		} else {
			off := uint32(len(lp.arena))
			lp.arena = append(lp.arena, lp.arena[tl.off:tl.off+tl.n]...)
			lp.arena = extend(lp.arena, int(c-tl.n))
			lp.holes += int(tl.cap)
			tl.off = off
		}
		tl.cap = c
	}
	lp.arena[tl.off+tl.n] = p
	tl.n++
}

// extend lengthens a by n entries (their contents are never read).
func extend(a []posting, n int) []posting {
	a = slices.Grow(a, n)
	return a[:len(a)+n]
}

// compactMin is the fewest holes (and free slots) worth a rebuild (tests
// lower it).
var compactMin = 1024

func (lp *lexPart) maybeCompact() {
	if lp.holes >= compactMin && lp.holes > len(lp.arena)/3 {
		lp.rebuild(nil)
	}
}

// rebuild copies every list into a new arena with room for a quarter as many
// postings again, so a rebuild is paid for by at least that many appends or
// removals. With renum, dead postings are dropped and slots renumbered.
func (lp *lexPart) rebuild(renum []int32) {
	lp.rebuilds++
	total := 0
	for _, tl := range lp.terms {
		total += int(tl.n) + int(tl.n)/4 + 1
	}
	arena := make([]posting, 0, total)
	for id, tl := range lp.terms {
		off := len(arena)
		tl.maxTF = 0
		for _, p := range lp.list(tl) {
			if renum != nil {
				r := renum[p.doc]
				if r < 0 {
					continue
				}
				p.doc = uint32(r)
			}
			arena = append(arena, p)
			if lp.dl[p.doc] >= 0 { // (renumbered slots: lp.dl is already renumbered)
				tl.maxTF = max(tl.maxTF, p.tf)
			}
		}
		n := len(arena) - off
		c := n + n/4 + 1
		arena = arena[:off+c]
		tl.off, tl.n, tl.cap = uint32(off), uint32(n), uint32(c)
		lp.terms[id] = tl
	}
	lp.arena = arena
	lp.holes = 0
}

// unpend notes that one posting naming dead slot s was dropped.
func (lp *lexPart) unpend(s uint32) {
	if lp.pending[s]--; lp.pending[s] == 0 {
		lp.free = append(lp.free, int32(s))
	}
}

// remove unindexes tk's documents. A term's postings are rewritten once more
// than half of them are dead, so the garbage is bounded and its cleanup costs
// O(1) amortized per removed posting; a slot is reused once no posting names
// it, and the slot arrays are renumbered when mostly free.
func (lp *lexPart) remove(tk *ticket) {
	lt := tk.lex
	for k, s := range lt.slot {
		terms := lt.chunk(k)
		lp.dl[s] = -1
		lp.docs[s] = docRef{}
		lp.pending[s] = int32(len(terms))
		if len(terms) == 0 {
			lp.free = append(lp.free, s)
		}
		lp.live--
		lp.sumDL -= float64(lt.dl[k])
		for _, t := range terms {
			tl := lp.terms[t.id]
			if tl.df--; tl.df <= 0 {
				for _, p := range lp.list(tl) {
					lp.unpend(p.doc)
				}
				lp.holes += int(tl.cap)
				delete(lp.terms, t.id)
				continue
			}
			if tl.n > 2*uint32(tl.df)+8 {
				tl.n = uint32(len(slices.DeleteFunc(lp.list(tl), func(p posting) bool {
					if lp.dl[p.doc] < 0 {
						lp.unpend(p.doc)
						return true
					}
					return false
				})))
				tl.maxTF = 0
				for _, p := range lp.list(tl) {
					tl.maxTF = max(tl.maxTF, p.tf)
				}
			}
			lp.terms[t.id] = tl
		}
	}
	if lp.live == 0 {
		lp.sumDL = 0 // no drift left behind by float subtraction
		lp.minDL = float32(math.Inf(1))
	}
	lt.slot = nil
	lp.shrink(compactMin)
	lp.maybeCompact()
}

// shrink renumbers the slots once most of them are free (after large
// deletes), dropping every dead posting, so the slot arrays give memory back.
// It costs O(slots + postings) of the partition, after at least as many
// removals.
func (lp *lexPart) shrink(minFree int) {
	if len(lp.free) < minFree || len(lp.free) < 3*len(lp.dl)/4 {
		return
	}
	lp.shrinks++
	renum := make([]int32, len(lp.dl))
	n := int32(0)
	lp.minDL = float32(math.Inf(1))
	for s, dl := range lp.dl {
		if dl < 0 {
			renum[s] = -1
			continue
		}
		lp.minDL = min(lp.minDL, dl)
		renum[s] = n
		lp.dl[n], lp.docs[n] = dl, lp.docs[s]
		ref := lp.docs[n]
		ref.t.lex.slot[ref.k] = n
		n++
	}
	lp.rebuild(renum)
	lp.dl = slices.Clone(lp.dl[:n])
	lp.docs = slices.Clone(lp.docs[:n])
	lp.pending = make([]int32, n)
	lp.free = nil
}

// lexScratch is a search's score accumulator, keyed by document slot; acc is
// all zeros between partitions (every score is positive, so zero means
// untouched).
type lexScratch struct {
	acc     []float64
	touched []uint32
}

// SearchLexical implements retrieval.LexicalSearcher: BM25 over the chunks the
// filter allows, with the statistics (document count, average length,
// document frequencies) of exactly those chunks. Every allowed posting of a
// query term is scored, so the answer is exact.
func (s *Store) SearchLexical(ctx context.Context, r retrieval.LexicalRequest) (retrieval.SearchResult, error) {
	if r.K < 1 {
		return retrieval.SearchResult{}, clearance.Invalid("k", "must be at least 1, got %d", r.K)
	}
	if r.Offset < 0 {
		return retrieval.SearchResult{}, clearance.Invalid("offset", "must not be negative, got %d", r.Offset)
	}
	if err := s.beginRead(ctx); err != nil {
		return retrieval.SearchResult{}, err
	}
	defer s.mu.RUnlock()
	hits, _ := s.ix.searchLexical(lexical.QueryTerms(r.Terms), r.Filter, r.K+r.Offset, &s.lexScratch, true)
	if r.Offset >= len(hits) {
		hits = nil
	} else {
		hits = hits[r.Offset:]
	}
	return retrieval.SearchResult{Hits: hits, Plan: retrieval.PlanBM25, Exact: true}, nil
}

// searchLexical ranks the top m allowed chunks for terms. With prune, the
// partitions are scored in the order of their score bound, highest first, and
// once the top m is full the rest are skipped when their bound is below the
// m-th score (partition-level MaxScore): none of their documents could enter,
// not even on a tie, so the answer is the same either way. A ticket key's
// prefix (`bt` of `BT-1234`) is in every chunk's title; without this, a key
// query scores every allowed chunk. It also returns how many partitions it
// skipped (for tests).
func (ix *index) searchLexical(terms []string, f retrieval.Filter, m int, pool *sync.Pool, prune bool) ([]retrieval.Hit, int) {
	segs, _ := ix.resolve(f)
	if len(segs) == 0 || len(terms) == 0 {
		return nil, 0
	}
	// A term the store has never seen has no postings and no document
	// frequency anywhere; it only has to keep its place out of the sums.
	ids := make([]uint32, 0, len(terms))
	known := make([]bool, len(terms))
	for i, t := range terms {
		id, ok := ix.dict.ids[t]
		ids = append(ids, id)
		known[i] = ok
	}
	// Statistics of the allowed chunks only: whole partitions from their
	// counters, named tickets from their documents.
	// A partition's term lists are looked up once, here, and kept for its
	// bound and its scoring.
	type part struct {
		lp  *lexPart
		tls []termList // by query term (zero: none)
		ub  float64
	}
	var n int
	var sumDL float64
	df := make([]int, len(terms))
	parts := make([]part, 0, len(segs))
	tls := make([]termList, 0, len(segs)*len(ids))
	for _, sg := range segs {
		if sg.t == nil {
			lp := sg.p.lex
			n += lp.live
			sumDL += lp.sumDL
			off := len(tls)
			for i, id := range ids {
				var tl termList
				if known[i] {
					tl = lp.terms[id]
					df[i] += int(tl.df)
				}
				tls = append(tls, tl)
			}
			parts = append(parts, part{lp: lp, tls: tls[off:len(tls):len(tls)]})
			continue
		}
		lt := sg.t.lex
		for k, dl := range lt.dl {
			n++
			sumDL += float64(dl)
			for i, id := range ids {
				if known[i] && lt.tf(k, id) > 0 {
					df[i]++
				}
			}
		}
	}
	if n == 0 {
		return nil, 0
	}
	avgdl := sumDL / float64(n)
	idf := make([]float64, len(terms))
	for i := range terms {
		idf[i] = lexical.IDF(n, df[i])
	}
	// Scores are summed term by term in sorted term order, in float64. Named
	// tickets first, then the partitions (in bound order when pruning).
	top := newTopK(m)
	for _, sg := range segs {
		if sg.t == nil {
			continue
		}
		lt := sg.t.lex
		for k, dl := range lt.dl {
			var acc float64
			hit := false
			for i, id := range ids {
				if !known[i] {
					continue
				}
				if tf := lt.tf(k, id); tf > 0 {
					acc += lexical.TermScore(idf[i], tf, dl, avgdl)
					hit = true
				}
			}
			if c := (cand{score: float32(acc), t: sg.t, k: int32(k)}); hit && top.admits(c.score) {
				top.push(c)
			}
		}
	}
	if prune {
		for i := range parts {
			parts[i].ub = parts[i].lp.bound(parts[i].tls, idf, avgdl)
		}
		slices.SortStableFunc(parts, func(a, b part) int { return cmp.Compare(b.ub, a.ub) })
	}
	var sc *lexScratch
	skipped := 0
	for i, pt := range parts {
		if prune && (pt.ub == 0 || (len(top.h) == top.m && float32(pt.ub) < top.h[0].score)) {
			skipped = len(parts) - i
			break
		}
		if sc == nil {
			sc, _ = pool.Get().(*lexScratch)
			if sc == nil {
				sc = &lexScratch{}
			}
		}
		lp := pt.lp
		if len(sc.acc) < len(lp.dl) {
			sc.acc = make([]float64, len(lp.dl))
		}
		acc := sc.acc[:len(lp.dl)]
		touched := sc.touched[:0]
		for i, tl := range pt.tls {
			for _, p := range lp.list(tl) {
				dl := lp.dl[p.doc]
				if dl < 0 {
					continue
				}
				if acc[p.doc] == 0 {
					touched = append(touched, p.doc)
				}
				acc[p.doc] += lexical.TermScore(idf[i], p.tf, dl, avgdl)
			}
		}
		for _, d := range touched {
			c := cand{score: float32(acc[d]), t: lp.docs[d].t, k: lp.docs[d].k}
			acc[d] = 0
			if top.admits(c.score) {
				top.push(c)
			}
		}
		sc.touched = touched[:0]
	}
	if sc != nil {
		pool.Put(sc)
	}
	cands := top.sorted()
	hits := make([]retrieval.Hit, len(cands))
	for i, c := range cands {
		hits[i] = retrieval.Hit{
			TicketID: c.t.ID, Tenant: c.t.Tenant, Project: c.t.Project, Title: c.t.Title,
			Ordinal: int(c.t.ords[c.k]), Text: c.t.texts[c.k], Score: c.score,
		}
	}
	return hits, skipped
}

// bound is at least the BM25 score of every live document of lp for the
// query terms, given its lists of them (0 when it holds none): each term's score at its
// highest frequency and the partition's shortest length, summed (BM25 grows
// with the frequency and falls with the length), with a margin far above the
// rounding of the real scores' float arithmetic.
func (lp *lexPart) bound(tls []termList, idf []float64, avgdl float64) float64 {
	var ub float64
	for i, tl := range tls {
		if tl.df > 0 {
			ub += lexical.TermScore(idf[i], tl.maxTF, lp.minDL, avgdl)
		}
	}
	return ub * (1 + 1e-9)
}
