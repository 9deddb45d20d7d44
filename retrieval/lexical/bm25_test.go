package lexical

import (
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
