package embedded

import (
	"slices"
	"strings"
	"sync"

	"github.com/clearance-dev/clearance/retrieval"
)

// segment is a piece of work for a scan: rows [lo, hi) of a partition, or, for
// tickets named directly in a filter, the listed rows.
type segment struct {
	p      *partition
	lo, hi int
	rows   []int32
	t      *ticket // the named ticket of a rows segment
}

// resolve turns a filter into the segments to scan: every allowed partition
// whole, plus the rows of directly named tickets whose partition is not already
// allowed (so no row is scanned twice).
func (ix *index) resolve(f retrieval.Filter) (segs []segment, rows int) {
	if f.Tenant == "" {
		return nil, 0
	}
	ps := ix.tenants[f.Tenant]
	var allowed map[*partition]bool
	add := func(p *partition) {
		segs = append(segs, segment{p: p, lo: 0, hi: len(p.rows)})
		rows += len(p.rows)
	}
	if f.AllProjects {
		for _, p := range ps {
			add(p)
		}
	} else if len(ps) > 0 {
		allowed = make(map[*partition]bool, min(len(f.Projects), len(ps)))
		for _, name := range f.Projects {
			if p := ps[name]; p != nil && !allowed[p] {
				allowed[p] = true
				add(p)
			}
		}
	}
	var named map[string]bool
	for _, id := range f.Tickets {
		tk := ix.tickets[id]
		if tk == nil || tk.Tenant != f.Tenant || f.AllProjects || allowed[tk.part] || named[id] {
			continue
		}
		if named == nil {
			named = map[string]bool{}
		}
		named[id] = true
		segs = append(segs, segment{p: tk.part, rows: tk.rows, t: tk})
		rows += len(tk.rows)
	}
	return segs, rows
}

// cand is a scored row.
type cand struct {
	score float32
	t     *ticket
	k     int32
}

// better reports whether a ranks before b: higher score, then (TicketID, Ordinal)
// ascending, as the retrieval contract requires.
func better(a, b cand) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	if a.t != b.t {
		// One comparison of the ids (ties are common in BM25: equal lengths
		// and frequencies give equal scores).
		if c := strings.Compare(a.t.ID, b.t.ID); c != 0 {
			return c < 0
		}
	}
	return a.t.ords[a.k] < b.t.ords[b.k]
}

// topK keeps the m best candidates in a min-heap whose root is the worst.
type topK struct {
	m int
	h []cand
}

func newTopK(m int) *topK { return &topK{m: m, h: make([]cand, 0, min(m, 4096))} }

// admits is the hot-loop test: can a row with this score enter?
func (t *topK) admits(s float32) bool { return len(t.h) < t.m || s >= t.h[0].score }

func (t *topK) push(c cand) {
	if len(t.h) < t.m {
		t.h = append(t.h, c)
		t.up(len(t.h) - 1)
		return
	}
	if !better(c, t.h[0]) {
		return
	}
	t.h[0] = c
	t.down(0)
}

func (t *topK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !better(t.h[p], t.h[i]) {
			return
		}
		t.h[p], t.h[i] = t.h[i], t.h[p]
		i = p
	}
}

func (t *topK) down(i int) {
	n := len(t.h)
	for {
		w := i
		if l := 2*i + 1; l < n && better(t.h[w], t.h[l]) {
			w = l
		}
		if r := 2*i + 2; r < n && better(t.h[w], t.h[r]) {
			w = r
		}
		if w == i {
			return
		}
		t.h[w], t.h[i] = t.h[i], t.h[w]
		i = w
	}
}

// sorted returns the candidates best first.
func (t *topK) sorted() []cand {
	out := slices.Clone(t.h)
	slices.SortFunc(out, func(a, b cand) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	return out
}

// scanner runs exact (or int8-then-exact) scans over segments.
type scanner struct {
	dim      int
	dot      func(a, b []float32) float32
	workers  int
	minSplit int // rows below which a scan stays on one goroutine
	minQuant int // rows below which a quantized index still scans float32
}

// search returns the best m candidates of segs, best first.
func (sc *scanner) search(q []float32, segs []segment, rows, m int, quantize bool) []cand {
	if rows == 0 || m == 0 {
		return nil
	}
	parts := sc.split(segs, rows)
	heaps := make([]*topK, len(parts))
	var qq *queryCodes
	if quantize {
		qq = encodeQuery(q)
	}
	if len(parts) == 1 {
		heaps[0] = sc.scan(q, qq, parts[0], m)
	} else {
		var wg sync.WaitGroup
		for i, p := range parts {
			wg.Go(func() { heaps[i] = sc.scan(q, qq, p, m) })
		}
		wg.Wait()
	}
	all := heaps[0]
	for _, h := range heaps[1:] {
		for _, c := range h.h {
			all.push(c)
		}
	}
	return all.sorted()
}

// split divides the segments into at most workers groups of about equal rows,
// cutting partitions into row ranges where needed.
func (sc *scanner) split(segs []segment, rows int) [][]segment {
	w := sc.workers
	if w <= 1 || rows < sc.minSplit {
		return [][]segment{segs}
	}
	per := (rows + w - 1) / w
	out := make([][]segment, 0, w)
	var cur []segment
	room := per
	for _, s := range segs {
		if s.rows != nil {
			cur = append(cur, s)
			room -= len(s.rows)
		} else {
			for lo := s.lo; lo < s.hi; {
				hi := min(s.hi, lo+max(room, 1))
				cur = append(cur, segment{p: s.p, lo: lo, hi: hi})
				room -= hi - lo
				lo = hi
				if room <= 0 && len(out) < w-1 {
					out = append(out, cur)
					cur, room = nil, per
				}
			}
		}
		if room <= 0 && len(out) < w-1 {
			out = append(out, cur)
			cur, room = nil, per
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// scan is one goroutine's share of a search.
func (sc *scanner) scan(q []float32, qq *queryCodes, segs []segment, m int) *topK {
	if qq != nil {
		return sc.scanQuantized(q, qq, segs, m)
	}
	h := newTopK(m)
	d := sc.dim
	dot := sc.dot
	for _, s := range segs {
		vecs, refs := s.p.vecs, s.p.rows
		if s.rows != nil {
			for _, r := range s.rows {
				i := int(r)
				if sc := dot(q, vecs[i*d:(i+1)*d:(i+1)*d]); h.admits(sc) {
					h.push(cand{score: sc, t: refs[i].t, k: refs[i].k})
				}
			}
			continue
		}
		for i := s.lo; i < s.hi; i++ {
			if sc := dot(q, vecs[i*d:(i+1)*d:(i+1)*d]); h.admits(sc) {
				h.push(cand{score: sc, t: refs[i].t, k: refs[i].k})
			}
		}
	}
	return h
}

// scanQuantized scores rows with int8 codes, keeps every row whose score bound
// can still reach the top m, and rescores those with float32. The bounds are
// rigorous (see quant.go), so the result equals the exact scan's.
func (sc *scanner) scanQuantized(q []float32, qq *queryCodes, segs []segment, m int) *topK {
	lower := newTopK(m) // m best lower bounds; its root is the admission threshold
	type maybe struct {
		hi  float32
		p   *partition
		row int32
	}
	var keep []maybe
	d := sc.dim
	visit := func(p *partition, i int) {
		lo, hi := p.q.bounds(qq, i, d)
		if lower.admits(lo) {
			lower.push(cand{score: lo, t: p.rows[i].t, k: p.rows[i].k})
		}
		if len(lower.h) < m || hi >= lower.h[0].score {
			keep = append(keep, maybe{hi: hi, p: p, row: int32(i)})
		}
	}
	for _, s := range segs {
		if s.rows != nil {
			for _, r := range s.rows {
				visit(s.p, int(r))
			}
			continue
		}
		for i := s.lo; i < s.hi; i++ {
			visit(s.p, i)
		}
	}
	h := newTopK(m)
	if len(lower.h) == 0 {
		return h
	}
	threshold := lower.h[0].score
	full := len(lower.h) == m
	for _, c := range keep {
		if full && c.hi < threshold {
			continue
		}
		i := int(c.row)
		s := sc.dot(q, c.p.vecs[i*d:(i+1)*d])
		if h.admits(s) {
			h.push(cand{score: s, t: c.p.rows[i].t, k: c.p.rows[i].k})
		}
	}
	return h
}
