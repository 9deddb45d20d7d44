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
// documents; always positive. The logarithm is Ln, not math.Log, so that
// PostgreSQL computes the same bits (see Ln).
func IDF(n, df int) float64 {
	return Ln(1 + (float64(n)-float64(df)+0.5)/(float64(df)+0.5))
}

// Ln constants: FreeBSD's e_log.c, as Go's math package has them.
const (
	ln2Hi = 6.93147180369123816490e-01 /* 3fe62e42 fee00000 */
	ln2Lo = 1.90821492927058770002e-10 /* 3dea39ef 35793c76 */
	lnL1  = 6.666666666666735130e-01   /* 3FE55555 55555593 */
	lnL2  = 3.999999999940941908e-01   /* 3FD99999 9997FA04 */
	lnL3  = 2.857142874366239149e-01   /* 3FD24924 94229359 */
	lnL4  = 2.222219843214978396e-01   /* 3FCC71C5 1D8E78AF */
	lnL5  = 1.818357216161805012e-01   /* 3FC74664 96CB03DE */
	lnL6  = 1.531383769920937332e-01   /* 3FC39A09 D078C69F */
	lnL7  = 1.479819860511658591e-01   /* 3FC2F112 DF3E5244 */
)

// Ln is the natural logarithm (error below 1 ulp), computed as a fixed
// sequence of IEEE-754 double operations: FreeBSD's algorithm, which Go's
// math.Log also uses, with the argument reduced by exact halvings instead of
// Frexp and every product converted explicitly so that no compiler fuses a
// multiply-add. PostgreSQL's clearance_ln function (internal/pgschema, vector
// migration 5) repeats it operation for operation, so a store computing
// IDFs in SQL gets the bits this function gives; math.Log and the C
// library's log differ in the last bit for about 7% of the IDFs BM25 needs.
// Arguments outside the normal positive range go to math.Log.
func Ln(x float64) float64 {
	const c = math.Sqrt2 / 2
	if !(x >= 0x1p-1022) || math.IsInf(x, 1) {
		return math.Log(x)
	}
	// f1 = x / 2^k in [c, 2c): the f1 and k Frexp and the adjustment below
	// it in math.log produce, by exact halvings or doublings.
	f1, k := x, 0.0
	for f1 >= 2*c {
		f1, k = f1/2, k+1
	}
	for f1 < c {
		f1, k = f1*2, k-1
	}
	f := f1 - 1
	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * (lnL1 + float64(s4*(lnL3+float64(s4*(lnL5+float64(s4*lnL7)))))))
	t2 := float64(s4 * (lnL2 + float64(s4*(lnL4+float64(s4*lnL6)))))
	r := t1 + t2
	hfsq := float64(float64(0.5*f) * f)
	return float64(k*ln2Hi) - ((hfsq - (float64(s*(hfsq+r)) + float64(k*ln2Lo))) - f)
}

// TermScore is one term's contribution to a document of length dl, where the
// average length of the scope is avgdl.
func TermScore(idf float64, tf, dl float32, avgdl float64) float64 {
	f := float64(tf)
	norm := 1.0
	if avgdl > 0 {
		norm = 1 - B + float64(B*float64(dl))/avgdl
	}
	// The products are converted explicitly: a compiler may otherwise fuse
	// f + K1*norm into one multiply-add (arm64 does), and the SQL of the
	// pgvector store, which repeats this operation for operation, does not.
	return float64(float64(idf*f)*(K1+1)) / (f + float64(K1*norm))
}

// QueryTerms returns the distinct terms of terms, sorted: the order scores
// are summed in, so every store adds the same floats in the same order.
func QueryTerms(terms []string) []string {
	out := slices.Clone(terms)
	slices.Sort(out)
	return slices.Compact(out)
}
