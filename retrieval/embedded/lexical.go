package embedded

import (
	"context"
	"slices"

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

// lexDoc is the lexical document of one chunk in one partition. A removed or
// moved ticket's documents are marked dead; their postings are dropped lazily.
type lexDoc struct {
	t    *ticket
	k    int32
	doc  lexical.Doc
	dead bool
}

type posting struct {
	d  *lexDoc
	tf float32
}

// lexPart is one partition's postings and statistics.
type lexPart struct {
	post  map[string][]posting // may hold dead postings
	df    map[string]int32     // live documents per term
	live  int
	sumDL float64
}

func newLexPart() *lexPart {
	return &lexPart{post: map[string][]posting{}, df: map[string]int32{}}
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

// add indexes tk's documents in lp.
func (lp *lexPart) add(tk *ticket, docs []lexical.Doc) {
	tk.lex = make([]*lexDoc, len(docs))
	for k, doc := range docs {
		d := &lexDoc{t: tk, k: int32(k), doc: doc}
		tk.lex[k] = d
		for _, term := range doc.Terms {
			lp.post[term.Term] = append(lp.post[term.Term], posting{d: d, tf: term.TF})
			lp.df[term.Term]++
		}
		lp.live++
		lp.sumDL += float64(doc.Len)
	}
}

// remove unindexes tk's documents. A term's postings are rewritten once more
// than half of them are dead, so the garbage is bounded and its cleanup costs
// O(1) amortized per removed posting.
func (lp *lexPart) remove(tk *ticket) {
	for _, d := range tk.lex {
		d.dead = true
		lp.live--
		lp.sumDL -= float64(d.doc.Len)
		for _, term := range d.doc.Terms {
			df := lp.df[term.Term] - 1
			if df <= 0 {
				delete(lp.df, term.Term)
				delete(lp.post, term.Term)
				continue
			}
			lp.df[term.Term] = df
			if ps := lp.post[term.Term]; len(ps) > 2*int(df)+8 {
				lp.post[term.Term] = slices.DeleteFunc(ps, func(p posting) bool { return p.d.dead })
			}
		}
	}
	if lp.live == 0 {
		lp.sumDL = 0 // no drift left behind by float subtraction
	}
	tk.lex = nil
}

// docsOf returns the lexical documents of tk (for a move, which keeps them).
func docsOf(tk *ticket) []lexical.Doc {
	out := make([]lexical.Doc, len(tk.lex))
	for i, d := range tk.lex {
		out[i] = d.doc
	}
	return out
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
	hits := s.ix.searchLexical(lexical.QueryTerms(r.Terms), r.Filter, r.K+r.Offset)
	if r.Offset >= len(hits) {
		hits = nil
	} else {
		hits = hits[r.Offset:]
	}
	return retrieval.SearchResult{Hits: hits, Plan: retrieval.PlanBM25, Exact: true}, nil
}

func (ix *index) searchLexical(terms []string, f retrieval.Filter, m int) []retrieval.Hit {
	segs, _ := ix.resolve(f)
	if len(segs) == 0 || len(terms) == 0 {
		return nil
	}
	// Statistics of the allowed chunks only: whole partitions from their
	// counters, named tickets from their documents.
	var n int
	var sumDL float64
	df := make([]int, len(terms))
	for _, sg := range segs {
		if sg.t == nil {
			lp := sg.p.lex
			n += lp.live
			sumDL += lp.sumDL
			for i, t := range terms {
				df[i] += int(lp.df[t])
			}
			continue
		}
		for _, d := range sg.t.lex {
			n++
			sumDL += float64(d.doc.Len)
			for i, t := range terms {
				if d.doc.TF(t) > 0 {
					df[i]++
				}
			}
		}
	}
	if n == 0 {
		return nil
	}
	avgdl := sumDL / float64(n)
	idf := make([]float64, len(terms))
	for i := range terms {
		idf[i] = lexical.IDF(n, df[i])
	}
	// Scores are summed term by term in sorted term order, in float64.
	acc := map[*lexDoc]float64{}
	for _, sg := range segs {
		if sg.t == nil {
			for i, t := range terms {
				for _, p := range sg.p.lex.post[t] {
					if !p.d.dead {
						acc[p.d] += lexical.TermScore(idf[i], p.tf, p.d.doc.Len, avgdl)
					}
				}
			}
			continue
		}
		for _, d := range sg.t.lex {
			for i, t := range terms {
				if tf := d.doc.TF(t); tf > 0 {
					acc[d] += lexical.TermScore(idf[i], tf, d.doc.Len, avgdl)
				}
			}
		}
	}
	top := newTopK(m)
	for d, sc := range acc {
		c := cand{score: float32(sc), t: d.t, k: d.k}
		if top.admits(c.score) {
			top.push(c)
		}
	}
	cands := top.sorted()
	hits := make([]retrieval.Hit, len(cands))
	for i, c := range cands {
		hits[i] = retrieval.Hit{
			TicketID: c.t.ID, Tenant: c.t.Tenant, Project: c.t.Project, Title: c.t.Title,
			Ordinal: int(c.t.ords[c.k]), Text: c.t.texts[c.k], Score: c.score,
		}
	}
	return hits
}
