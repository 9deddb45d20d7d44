package lexical

import (
	"math"
	"slices"
	"strings"
)

// BM25 parameters. A chunk is one document with two fields: its title (the
// ticket id and title, repeated with every chunk of the ticket) and its body
// (the chunk's text). Title terms count TitleWeight times, in the term
// frequency and in the length, with one shared length normalization: BM25F
// with a single b, which keeps a per-field average out of the statistics.
const (
	K1          = 1.2
	B           = 0.75
	TitleWeight = 2
)

// Term is one distinct term of a document with its weighted frequency.
type Term struct {
	Term string
	TF   float32
}

// Doc is the lexical form of one chunk: its distinct terms sorted by Term, and
// its weighted length.
type Doc struct {
	Terms []Term
	Len   float32
}

// Analyze builds the document of one chunk of ticket id with title and text.
func Analyze(id, title, text string) Doc {
	head, body := Tokenize(id+" "+title), Tokenize(text)
	// Sorted and merged rather than counted in a map: no hashing, one
	// allocation. Frequencies and lengths are sums of small integers (title
	// terms count TitleWeight), exact in float32 in any order.
	terms := make([]Term, 0, len(head)+len(body))
	for _, t := range head {
		terms = append(terms, Term{Term: t, TF: TitleWeight})
	}
	for _, t := range body {
		terms = append(terms, Term{Term: t, TF: 1})
	}
	slices.SortFunc(terms, func(a, b Term) int { return strings.Compare(a.Term, b.Term) })
	out := terms[:0]
	for _, t := range terms {
		if k := len(out) - 1; k >= 0 && out[k].Term == t.Term {
			out[k].TF += t.TF
			continue
		}
		out = append(out, t)
	}
	return Doc{Terms: slices.Clip(out), Len: float32(len(head))*TitleWeight + float32(len(body))}
}

// TF returns the weighted frequency of term in d (0 if absent).
func (d Doc) TF(term string) float32 {
	i, ok := slices.BinarySearchFunc(d.Terms, term, func(t Term, s string) int { return strings.Compare(t.Term, s) })
	if !ok {
		return 0
	}
	return d.Terms[i].TF
}

// IDF is the BM25 inverse document frequency of a term found in df of n
// documents; always positive.
func IDF(n, df int) float64 {
	return math.Log(1 + (float64(n)-float64(df)+0.5)/(float64(df)+0.5))
}

// TermScore is one term's contribution to a document of length dl, where the
// average length of the scope is avgdl.
func TermScore(idf float64, tf, dl float32, avgdl float64) float64 {
	f := float64(tf)
	norm := 1.0
	if avgdl > 0 {
		norm = 1 - B + B*float64(dl)/avgdl
	}
	return idf * f * (K1 + 1) / (f + K1*norm)
}

// QueryTerms returns the distinct terms of terms, sorted: the order scores
// are summed in, so every store adds the same floats in the same order.
func QueryTerms(terms []string) []string {
	out := slices.Clone(terms)
	slices.Sort(out)
	return slices.Compact(out)
}
