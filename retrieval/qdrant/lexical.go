package qdrant

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"golang.org/x/sync/errgroup"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// The lexical arm (retrieval.LexicalSearcher), docs/decisions/qdrant-lexical-arm.md.
//
// Each chunk point carries, next to its dense vector, a sparse vector "lex"
// whose indices are term ids (FNV-1a of the term) and whose values are the
// term's weighted frequency in the chunk (lexical.Analyze), and three payload
// fields: lex_len (the weighted length, an integer), lex_terms (the distinct
// terms, under a keyword index) and, only when two of the chunk's own terms
// share an id, lex_coll (those terms' frequencies). Qdrant computes no
// statistic and no score of ours: its IDF modifier counts the whole
// collection, every tenant (docs/decisions/lexical-statistics.md). Instead a
// search reads, under the search's own filter and nothing wider:
//
//  1. the number of allowed chunks (Count, exact), their lengths (Facet on
//     lex_len, exact: value -> count pairs, summed here) and each query
//     term's document frequency (Count with lex_terms = term, exact);
//  2. each term's postings: a sparse query {id(term): 1} whose score is the
//     chunk's frequency of the term, filtered by lex_terms = term so that a
//     chunk holding only another term with the same id is never a posting,
//     all terms in one QueryBatch, at most LexicalMaxPostings in all (the
//     rarest terms whole, then the most frequent postings of the next; a
//     second batch then reads the capped terms' frequencies in the chunks
//     found that could still reach the page: cappedLookups);
//  3. the text of the page's hits (Get).
//
// BM25F is then computed here with lexical.IDF and lexical.TermScore, summed
// in sorted term order, so scores equal the embedded store's and pgvector's.

// Names of the lexical arm in the chunks collection.
const (
	lexVector   = "lex"
	keyLexLen   = "lex_len"
	keyLexTerms = "lex_terms"
	keyLexColl  = "lex_coll"
)

// PlanBM25Capped is the plan of a lexical search whose query terms held more
// postings under the filter than Config.LexicalMaxPostings: the hits are
// exactly the best of the chunks found, with exact scores, but chunks holding
// only the most common query terms may be missing, so the answer says
// exact:false.
const PlanBM25Capped = "bm25-capped"

// DefaultLexicalMaxPostings bounds the postings one lexical search reads
// (about 100 bytes each on the wire).
const DefaultLexicalMaxPostings = 200_000

// maxQueryTerms bounds the distinct terms of one lexical search (as on
// pgvector): each is a Count and a query of the batch.
const maxQueryTerms = 1000

// facetLimit bounds the distinct chunk lengths a search sums; a filter whose
// chunks have more distinct lengths is answered with exact:false.
const facetLimit = 1 << 16

// statWorkers bounds the statistics requests one search has in flight.
const statWorkers = 8

// termID is the sparse index of a term. Ids may collide (32 bits); the keyword
// filter on lex_terms keeps a collision from adding postings, and lex_coll
// from mixing two terms' frequencies in one chunk.
func termID(term string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(term))
	return h.Sum32()
}

// lexDoc is the lexical part of one chunk point.
type lexDoc struct {
	indices []uint32 // sorted, distinct
	values  []float32
	length  int64
	terms   []string           // distinct, sorted
	coll    map[string]float32 // terms whose id another term of the chunk shares
}

// analyzeChunk builds the lexical fields of one chunk of ticket id.
func analyzeChunk(id, title, text string) lexDoc {
	d := lexical.Analyze(id, title, text)
	// Weighted lengths are sums of small integers (title terms count
	// lexical.TitleWeight): exact as an integer payload, which Facet can count.
	out := lexDoc{length: int64(d.Len), terms: make([]string, len(d.Terms))}
	type pair struct {
		id   uint32
		term string
		tf   float32
	}
	ps := make([]pair, len(d.Terms))
	for i, t := range d.Terms {
		out.terms[i] = t.Term
		ps[i] = pair{termID(t.Term), t.Term, t.TF}
	}
	slices.SortFunc(ps, func(a, b pair) int {
		return cmp.Or(cmp.Compare(a.id, b.id), strings.Compare(a.term, b.term))
	})
	for i, p := range ps {
		if n := len(out.indices); n > 0 && out.indices[n-1] == p.id {
			// A collision inside the chunk: the sparse value is the sum (only
			// its presence matters then); the true frequencies go to lex_coll.
			out.values[n-1] += p.tf
			if out.coll == nil {
				out.coll = map[string]float32{}
			}
			out.coll[ps[i-1].term] = ps[i-1].tf
			out.coll[p.term] = p.tf
			continue
		}
		out.indices = append(out.indices, p.id)
		out.values = append(out.values, p.tf)
	}
	// Three or more terms on one id are all recorded: each as it meets its
	// predecessor.
	return out
}

// payload adds d's fields to a chunk point's payload.
func (d lexDoc) payload(p map[string]any) {
	p[keyLexLen] = d.length
	terms := make([]any, len(d.terms))
	for i, t := range d.terms {
		terms[i] = t
	}
	p[keyLexTerms] = terms
	if len(d.coll) > 0 {
		coll := make(map[string]any, len(d.coll))
		for t, tf := range d.coll {
			coll[t] = float64(tf)
		}
		p[keyLexColl] = coll
	}
}

// termFilter is f narrowed to the chunks holding term.
func termFilter(f retrieval.Filter, term string) *qdrant.Filter {
	q := filter(f)
	q.Must = append(q.Must, qdrant.NewMatchKeyword(keyLexTerms, term))
	return q
}

// lexStats are the BM25 statistics of the chunks a filter allows.
type lexStats struct {
	n     int     // chunks
	sumDL float64 // sum of their lengths
	df    []int   // per query term (sorted order)
}

// facetTotals sums Facet hits of lex_len: the number of chunks and the sum of
// their lengths. complete is false when the facet may have left values out
// (as many values as the limit).
func facetTotals(hits []*qdrant.FacetHit, limit int) (n int, sum float64, complete bool) {
	for _, h := range hits {
		n += int(h.GetCount())
		// Lengths and counts are integers: the sum is exact in float64 up to
		// 2^53, whatever the order.
		sum += float64(h.GetValue().GetIntegerValue()) * float64(h.GetCount())
	}
	return n, sum, len(hits) < limit
}

// planPostings decides how many postings of each term a search reads: every
// posting of the rarest terms first while the budget lasts, the rest of the
// budget to the next term, none to the others. capped reports whether any
// term is read short.
func planPostings(df []int, budget int) (limits []int, capped bool) {
	limits = make([]int, len(df))
	order := make([]int, len(df))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(df[a], df[b]) })
	for _, i := range order {
		limits[i] = min(df[i], budget)
		budget -= limits[i]
		if limits[i] < df[i] {
			capped = true
		}
	}
	return limits, capped
}

// lexPosting is one chunk holding a query term.
type lexPosting struct {
	point   string // point id (UUID)
	ticket  string
	ordinal int
	dl      float32
	tf      float32
}

// lexCand is a scored chunk.
type lexCand struct {
	lexPosting
	score float64
}

// scoreLexical scores the postings (lists[i] holds term i's, terms in sorted
// order) with BM25F under st, one candidate per chunk, unordered. A chunk's
// score adds its terms' contributions in term order, in float64, as every
// store and the conformance reference do.
func scoreLexical(st lexStats, lists [][]lexPosting) []lexCand {
	if st.n == 0 {
		return nil
	}
	avgdl := st.sumDL / float64(st.n)
	total := 0
	for _, l := range lists {
		total += len(l)
	}
	byPoint := make(map[string]int32, total)
	cands := make([]lexCand, 0, total)
	for i, list := range lists {
		idf := lexical.IDF(st.n, st.df[i])
		for _, p := range list {
			j, ok := byPoint[p.point]
			if !ok {
				j = int32(len(cands))
				byPoint[p.point] = j
				cands = append(cands, lexCand{lexPosting: p})
			}
			cands[j].score += lexical.TermScore(idf, p.tf, p.dl, avgdl)
		}
	}
	return cands
}

// better is the ranking order: score, then (ticket, ordinal).
func better(a, b *lexCand) int {
	return cmp.Or(cmp.Compare(b.score, a.score), strings.Compare(a.ticket, b.ticket), cmp.Compare(a.ordinal, b.ordinal))
}

// topLexical returns the best m candidates, ranked (a new slice; cands is
// left as it is). A heap of m indices: a search needs offset+k of up to the
// whole budget's candidates, and sorting them all was most of its CPU.
func topLexical(cands []lexCand, m int) []lexCand {
	if m >= len(cands) {
		out := slices.Clone(cands)
		slices.SortFunc(out, func(a, b lexCand) int { return better(&a, &b) })
		return out
	}
	if m <= 0 {
		return nil
	}
	// h is a max-heap by ranking order: h[0] is the worst of the best m.
	h := make([]int32, 0, m)
	worse := func(i, j int32) bool { return better(&cands[i], &cands[j]) > 0 }
	down := func(i int) {
		for {
			l, w := 2*i+1, i
			if l < len(h) && worse(h[l], h[w]) {
				w = l
			}
			if r := l + 1; r < len(h) && worse(h[r], h[w]) {
				w = r
			}
			if w == i {
				return
			}
			h[i], h[w] = h[w], h[i]
			i = w
		}
	}
	for i := range cands {
		c := int32(i)
		if len(h) < m {
			h = append(h, c)
			for k := len(h) - 1; k > 0; {
				parent := (k - 1) / 2
				if !worse(h[k], h[parent]) {
					break
				}
				h[k], h[parent] = h[parent], h[k]
				k = parent
			}
			continue
		}
		if worse(h[0], c) {
			h[0] = c
			down(0)
		}
	}
	out := make([]lexCand, len(h))
	for i, c := range h {
		out[i] = cands[c]
	}
	slices.SortFunc(out, func(a, b lexCand) int { return better(&a, &b) })
	return out
}

// rankLexical is every candidate, ranked.
func rankLexical(st lexStats, lists [][]lexPosting) []lexCand {
	c := scoreLexical(st, lists)
	return topLexical(c, len(c))
}

// complete reports whether every term's postings are as many as planned
// (the counts said): fewer or more means a write landed in between.
func complete(lists [][]lexPosting, limits []int) bool {
	for i, l := range lists {
		if len(l) != limits[i] {
			return false
		}
	}
	return true
}

// postingsRead counts the postings held (for the debug line).
func postingsRead(lists [][]lexPosting) int {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	return n
}

// page is the ranking from offset, at most k.
func page(cands []lexCand, offset, k int) []lexCand {
	if offset >= len(cands) {
		return nil
	}
	return cands[offset:min(len(cands), offset+k)]
}

// posting reads one scored point of term's query.
func posting(p *qdrant.ScoredPoint, term string) (lexPosting, bool) {
	pl := p.GetPayload()
	tf := p.GetScore()
	if coll := pl[keyLexColl].GetStructValue().GetFields(); coll != nil {
		if v, ok := coll[term]; ok {
			tf = float32(number(v))
		}
	}
	lp := lexPosting{
		point: p.GetId().GetUuid(), ticket: pl[keyTicket].GetStringValue(),
		ordinal: int(pl[keyOrdinal].GetIntegerValue()), dl: float32(number(pl[keyLexLen])), tf: tf,
	}
	// A point without lexical fields (written by a binary without the arm)
	// or with a frequency that cannot be one is not a posting we can score.
	return lp, lp.point != "" && lp.dl > 0 && tf > 0
}

// number reads a numeric payload value, whichever kind the server chose.
func number(v *qdrant.Value) float64 {
	if _, ok := v.GetKind().(*qdrant.Value_IntegerValue); ok {
		return float64(v.GetIntegerValue())
	}
	return v.GetDoubleValue()
}

// SearchLexical implements retrieval.LexicalSearcher (see the top of this
// file). Statistics and postings are separate requests, and Qdrant has no
// snapshot across them: a search that sees them disagree (a write landed in
// between) runs once more, and answers exact:false if they disagree again.
func (s *Store) SearchLexical(ctx context.Context, r retrieval.LexicalRequest) (retrieval.SearchResult, error) {
	if r.K < 1 {
		return retrieval.SearchResult{}, clearance.Invalid("k", "must be at least 1, got %d", r.K)
	}
	if r.Offset < 0 {
		return retrieval.SearchResult{}, clearance.Invalid("offset", "must not be negative, got %d", r.Offset)
	}
	if !s.lex {
		return retrieval.SearchResult{}, fmt.Errorf("qdrant: collection %s was created without the lexical index (sparse vector %q); index into a new collection to search it lexically: %w",
			s.chunks, lexVector, retrieval.ErrUnsupported)
	}
	terms := lexical.QueryTerms(r.Terms)
	if len(terms) > maxQueryTerms {
		return retrieval.SearchResult{}, clearance.Invalid("query", "at most %d distinct terms, got %d", maxQueryTerms, len(terms))
	}
	if r.Filter.Empty() || len(terms) == 0 {
		return retrieval.SearchResult{Plan: retrieval.PlanBM25, Exact: true}, nil
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		res, consistent, err := s.searchLexical(ctx, terms, r)
		if err != nil {
			return retrieval.SearchResult{}, err
		}
		if consistent {
			return res, nil
		}
		if attempt == 1 {
			// Chunks written without the lexical fields make every search
			// disagree: warn once a minute, not once a search.
			msg := "qdrant lexical search: statistics and postings disagree twice (concurrent writes, or chunks written without the lexical fields: clearance reconcile reports them); answering exact:false"
			now, last := time.Now().Unix(), s.lexWarned.Load()
			if now-last >= 60 && s.lexWarned.CompareAndSwap(last, now) {
				s.log.WarnContext(ctx, msg)
			} else {
				s.log.DebugContext(ctx, msg)
			}
			res.Exact = false
			return res, nil
		}
	}
}

// searchLexical runs one attempt. consistent is false when the requests saw
// different states of the filter's chunks.
func (s *Store) searchLexical(ctx context.Context, terms []string, r retrieval.LexicalRequest) (retrieval.SearchResult, bool, error) {
	st, consistent, err := s.lexStats(ctx, terms, r.Filter)
	if err != nil {
		return retrieval.SearchResult{}, false, err
	}
	res := retrieval.SearchResult{Plan: retrieval.PlanBM25, Exact: true}
	if st.n == 0 {
		return res, consistent, nil
	}
	limits, capped := planPostings(st.df, s.cfg.LexicalMaxPostings)
	lists, ok, err := s.postings(ctx, terms, limits, r.Filter)
	if err != nil {
		return retrieval.SearchResult{}, false, err
	}
	consistent = consistent && ok && complete(lists, limits)
	if capped {
		res.Plan, res.Exact = PlanBM25Capped, false
		if err := s.completeCapped(ctx, terms, st, limits, lists, r.Offset+r.K, r.Filter); err != nil {
			return retrieval.SearchResult{}, false, err
		}
	}
	cands := page(topLexical(scoreLexical(st, lists), r.Offset+r.K), r.Offset, r.K)
	if len(cands) == 0 {
		return res, consistent, nil
	}
	hits, ok, err := s.lexHits(ctx, cands)
	if err != nil {
		return retrieval.SearchResult{}, false, err
	}
	res.Hits = hits
	s.log.DebugContext(ctx, "qdrant lexical search", "terms", len(terms), "k", r.K, "offset", r.Offset,
		"chunks", st.n, "postings", postingsRead(lists), "capped", capped, "hits", len(hits))
	return res, consistent && ok, nil
}

// lexStats reads the filter's statistics: the chunk count, the lengths (by
// Facet) and each term's document frequency, all exact, all under f.
func (s *Store) lexStats(ctx context.Context, terms []string, f retrieval.Filter) (lexStats, bool, error) {
	st := lexStats{df: make([]int, len(terms))}
	exact := true
	var total, facetN int
	var allLengths bool
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statWorkers)
	g.Go(func() error {
		n, err := s.c.Count(gctx, &qdrant.CountPoints{CollectionName: s.chunks, Filter: filter(f), Exact: &exact})
		total = int(n)
		return err
	})
	g.Go(func() error {
		limit := uint64(facetLimit)
		hits, err := s.c.Facet(gctx, &qdrant.FacetCounts{CollectionName: s.chunks, Key: keyLexLen, Filter: filter(f), Limit: &limit, Exact: &exact})
		facetN, st.sumDL, allLengths = facetTotals(hits, facetLimit)
		return err
	})
	for i, t := range terms {
		g.Go(func() error {
			n, err := s.c.Count(gctx, &qdrant.CountPoints{CollectionName: s.chunks, Filter: termFilter(f, t), Exact: &exact})
			st.df[i] = int(n)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return lexStats{}, false, unavailable("lexical statistics", err)
	}
	// Every allowed chunk has a length: fewer lengths than chunks means chunks
	// without the lexical fields, or a write between the two requests.
	st.n = facetN
	return st, allLengths && facetN == total, nil
}

// postings reads each term's postings under f, limits[i] of term i (the
// highest frequencies first when short), in one batch. ok is false when a
// point came back without the lexical fields.
func (s *Store) postings(ctx context.Context, terms []string, limits []int, f retrieval.Filter) ([][]lexPosting, bool, error) {
	lists := make([][]lexPosting, len(terms))
	var qs []*qdrant.QueryPoints
	var which []int
	for i, t := range terms {
		if limits[i] == 0 {
			continue
		}
		qs = append(qs, s.termQuery(t, termFilter(f, t), limits[i]))
		which = append(which, i)
	}
	if len(qs) == 0 {
		return lists, true, nil
	}
	res, err := s.c.QueryBatch(ctx, &qdrant.QueryBatchPoints{CollectionName: s.chunks, QueryPoints: qs})
	if err != nil {
		return nil, false, unavailable("lexical search", err)
	}
	if len(res) != len(qs) {
		return nil, false, unavailable("lexical search", fmt.Errorf("%d results for %d queries", len(res), len(qs)))
	}
	ok := true
	for j, br := range res {
		i := which[j]
		for _, p := range br.GetResult() {
			lp, good := posting(p, terms[i])
			if !good {
				ok = false
				continue
			}
			lists[i] = append(lists[i], lp)
		}
	}
	return lists, ok, nil
}

// termQuery asks for term's postings under flt: a sparse query with the
// term's id alone scores a chunk by its frequency of the term.
func (s *Store) termQuery(term string, flt *qdrant.Filter, limit int) *qdrant.QueryPoints {
	using := lexVector
	l := uint64(limit)
	return &qdrant.QueryPoints{
		CollectionName: s.chunks,
		Query:          qdrant.NewQuerySparse([]uint32{termID(term)}, []float32{1}),
		Using:          &using,
		Filter:         flt,
		Limit:          &l,
		WithPayload:    qdrant.NewWithPayloadInclude(keyTicket, keyOrdinal, keyLexLen, keyLexColl),
	}
}

// cappedLookups chooses, for each term read short (limits[i] < df[i]), the
// candidates (points of any term's postings) whose frequency of it must be
// read by id so that the first need candidates of the ranking are exactly
// the best need of all candidates, with exact scores.
//
// A candidate a capped term did not list holds that term at most as often as
// the least frequent posting read (the postings come highest frequency
// first), or any number of times if none was read; so its score is at most
// its score so far plus each such term's contribution at that frequency (or
// its supremum, idf * (K1+1)). Candidates whose bound is below the need-th
// score so far can never reach the page: lookups only raise scores. The
// others are looked up, best first, at most budget ids in all; past it the
// rest keep lower-bound scores (the answer is exact:false either way).
func cappedLookups(st lexStats, lists [][]lexPosting, limits []int, need, budget int) map[int][]string {
	out := map[int][]string{}
	var capped []int
	for i := range lists {
		if limits[i] < st.df[i] {
			capped = append(capped, i)
		}
	}
	if len(capped) == 0 || st.n == 0 {
		return out
	}
	avgdl := st.sumDL / float64(st.n)
	listed := make([]map[string]bool, len(lists))
	tfCap := make([]float32, len(lists))
	for _, i := range capped {
		listed[i] = make(map[string]bool, len(lists[i]))
		tfCap[i] = float32(math.Inf(1))
		for _, p := range lists[i] {
			listed[i][p.point] = true
			tfCap[i] = min(tfCap[i], p.tf)
		}
	}
	cands := scoreLexical(st, lists)
	theta := 0.0
	if top := topLexical(cands, need); need <= len(cands) && len(top) > 0 {
		theta = top[len(top)-1].score
	}
	// The candidates that can reach the page, best first: the budget goes to
	// the likeliest.
	type reach struct {
		c       *lexCand
		missing []int
	}
	var reaching []reach
	for k := range cands {
		c := &cands[k]
		bound := c.score
		var missing []int
		for _, i := range capped {
			if listed[i][c.point] {
				continue
			}
			missing = append(missing, i)
			idf := lexical.IDF(st.n, st.df[i])
			if math.IsInf(float64(tfCap[i]), 1) {
				bound += idf * (lexical.K1 + 1)
			} else {
				bound += lexical.TermScore(idf, tfCap[i], c.dl, avgdl)
			}
		}
		// A margin for the rounding of the sums: a bound must never fall
		// below the score it bounds.
		if len(missing) == 0 || bound*(1+1e-9)+1e-12 < theta {
			continue
		}
		reaching = append(reaching, reach{c, missing})
	}
	slices.SortFunc(reaching, func(a, b reach) int { return better(a.c, b.c) })
	for _, r := range reaching {
		if len(r.missing) > budget {
			break
		}
		budget -= len(r.missing)
		for _, i := range r.missing {
			out[i] = append(out[i], r.c.point)
		}
	}
	return out
}

// completeCapped reads the frequencies cappedLookups names and adds them to
// the postings, so that the page is the exact best of the candidates; what a
// capped answer can miss is only chunks that hold nothing but capped terms
// beyond the cap.
func (s *Store) completeCapped(ctx context.Context, terms []string, st lexStats, limits []int, lists [][]lexPosting, need int, f retrieval.Filter) error {
	lookups := cappedLookups(st, lists, limits, need, s.cfg.LexicalMaxPostings)
	if len(lookups) == 0 {
		return nil
	}
	var qs []*qdrant.QueryPoints
	var which []int
	for i := range terms {
		points, ok := lookups[i]
		if !ok {
			continue
		}
		ids := make([]*qdrant.PointId, len(points))
		for k, p := range points {
			ids[k] = qdrant.NewIDUUID(p)
		}
		flt := termFilter(f, terms[i])
		flt.Must = append(flt.Must, qdrant.NewHasID(ids...))
		qs = append(qs, s.termQuery(terms[i], flt, len(ids)))
		which = append(which, i)
	}
	res, err := s.c.QueryBatch(ctx, &qdrant.QueryBatchPoints{CollectionName: s.chunks, QueryPoints: qs})
	if err != nil {
		return unavailable("lexical search", err)
	}
	if len(res) != len(qs) {
		return unavailable("lexical search", fmt.Errorf("%d results for %d queries", len(res), len(qs)))
	}
	for j, br := range res {
		i := which[j]
		for _, p := range br.GetResult() {
			if lp, ok := posting(p, terms[i]); ok {
				lists[i] = append(lists[i], lp)
			}
		}
	}
	return nil
}

// lexHits reads the text of the ranked page. ok is false when a point has
// gone (deleted since the postings were read).
func (s *Store) lexHits(ctx context.Context, cands []lexCand) ([]retrieval.Hit, bool, error) {
	ids := make([]*qdrant.PointId, len(cands))
	for i, c := range cands {
		ids[i] = qdrant.NewIDUUID(c.point)
	}
	pts, err := s.c.Get(ctx, &qdrant.GetPoints{CollectionName: s.chunks, Ids: ids,
		WithPayload: qdrant.NewWithPayloadInclude(keyTenant, keyProject, keyTicket, keyOrdinal, keyTitle, keyText)})
	if err != nil {
		return nil, false, unavailable("lexical search", err)
	}
	byID := make(map[string]map[string]*qdrant.Value, len(pts))
	for _, p := range pts {
		byID[p.GetId().GetUuid()] = p.GetPayload()
	}
	hits := make([]retrieval.Hit, 0, len(cands))
	ok := true
	for _, c := range cands {
		pl, found := byID[c.point]
		if !found || pl[keyTicket].GetStringValue() != c.ticket {
			ok = false
			continue
		}
		hits = append(hits, retrieval.Hit{
			TicketID: c.ticket, Tenant: pl[keyTenant].GetStringValue(), Project: pl[keyProject].GetStringValue(),
			Title: pl[keyTitle].GetStringValue(), Ordinal: c.ordinal, Text: pl[keyText].GetStringValue(), Score: float32(c.score),
		})
	}
	return hits, ok, nil
}
