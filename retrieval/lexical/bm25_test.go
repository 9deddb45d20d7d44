package lexical

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// refAnalyze is Analyze as first written (frequencies counted in a map): the
// sort-and-merge version must give the same document for any text.
func refAnalyze(id, title, text string) Doc {
	tf := map[string]float32{}
	var n float32
	for _, t := range Tokenize(id + " " + title) {
		tf[t] += TitleWeight
		n += TitleWeight
	}
	for _, t := range Tokenize(text) {
		tf[t]++
		n++
	}
	d := Doc{Terms: make([]Term, 0, len(tf)), Len: n}
	for t, f := range tf {
		d.Terms = append(d.Terms, Term{Term: t, TF: f})
	}
	slices.SortFunc(d.Terms, func(a, b Term) int { return strings.Compare(a.Term, b.Term) })
	return d
}

func FuzzAnalyze(f *testing.F) {
	f.Add("SEC-12", "Login fails for SEC-12", "login login SEC 12 fooBar ERR_CONN_RESET")
	f.Add("T-1", "", "")
	f.Add("T-2", "Straße", "STRASSE straße ǅemo")
	f.Fuzz(func(t *testing.T, id, title, text string) {
		got, want := Analyze(id, title, text), refAnalyze(id, title, text)
		if got.Len != want.Len || !slices.Equal(got.Terms, want.Terms) {
			t.Fatalf("Analyze(%q, %q, %q) = %+v, want %+v", id, title, text, got, want)
		}
	})
}

// Ln is a logarithm: within one ulp of math.Log over the arguments BM25's IDF
// takes (and more), exact at powers of two, and math.Log's outside the
// normal positive range.
func TestLn(t *testing.T) {
	check := func(x float64) {
		t.Helper()
		got, want := Ln(x), math.Log(x)
		if got != want && math.Abs(got-want) > math.Abs(math.Nextafter(want, math.Inf(1))-want) {
			t.Fatalf("Ln(%v) = %v, math.Log = %v: more than one ulp apart", x, got, want)
		}
	}
	for _, n := range []int{1, 2, 3, 10, 333, 2500, 25000, 100000, 1 << 20} {
		for df := 1; df <= n && df <= 30000; df++ {
			check(1 + (float64(n)-float64(df)+0.5)/(float64(df)+0.5))
		}
	}
	for x := 1e-300; x < 1e300; x *= 1.37 {
		check(x)
	}
	for e := -1000; e <= 1000; e++ {
		if x := math.Ldexp(1, e); Ln(x) != float64(e)*math.Ln2 && math.Abs(Ln(x)-float64(e)*math.Ln2) > 1e-12*math.Abs(float64(e)) {
			t.Fatalf("Ln(2^%d) = %v", e, Ln(x))
		}
	}
	if Ln(1) != 0 || !math.IsInf(Ln(0), -1) || !math.IsNaN(Ln(-1)) || !math.IsInf(Ln(math.Inf(1)), 1) || !math.IsNaN(Ln(math.NaN())) {
		t.Fatal("special cases differ from math.Log")
	}
}
