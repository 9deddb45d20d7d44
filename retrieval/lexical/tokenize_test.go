package lexical

import (
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

func TestTokenize(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"ticket key", "see SEC-12.", []string{"see", "sec-12", "sec", "12"}},
		{"error code", "ERR_CONN_RESET", []string{"err_conn_reset", "err", "conn", "reset"}},
		{"sqlstate", "SQLSTATE 40001", []string{"sqlstate", "40001"}},
		{"dotted version", "upgrade to 1.22.1, then", []string{"upgrade", "to", "1.22.1", "1", "22", "1", "then"}},
		{"snake case", "foo_bar", []string{"foo_bar", "foo", "bar"}},
		{"camel case", "fooBar", []string{"foobar", "foo", "bar"}},
		{"acronym then word", "HTTPServer", []string{"httpserver", "http", "server"}},
		{"digits stay", "ipv6 v2Beta", []string{"ipv6", "v2beta", "v2", "beta"}},
		{"host name", "db01.prod.example.com", []string{"db01.prod.example.com", "db01", "prod", "example", "com"}},
		{"trailing connectors split nothing", "end. -x- a..b", []string{"end", "x", "a", "b"}},
		{"case folding", "Straße STRASSE", []string{"strasse", "strasse"}},
		{"full width", "ＳＥＣ－１２", []string{"sec-12", "sec", "12"}},
		{"accents kept", "Café CAFÉ", []string{"café", "café"}},
		{"greek final sigma folds", "ΣΊΣΥΦΟΣ σίσυφος", []string{"σίσυφοσ", "σίσυφοσ"}},
		{"cjk run", "東京 サーバー", []string{"東京", "サーバー"}},
		{"empty", "", nil},
		{"punctuation only", "-- ... !!", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Tokenize(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("Tokenize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestTermsDistinct(t *testing.T) {
	got := Terms("1.22.1 and 1.22.1")
	want := []string{"1.22.1", "1", "22", "and"}
	if !slices.Equal(got, want) {
		t.Errorf("Terms = %q, want %q", got, want)
	}
}

func TestLongTokenClipped(t *testing.T) {
	long := strings.Repeat("é", 100)
	toks := Tokenize(long)
	if len(toks) != 1 || len(toks[0]) > MaxTokenBytes || !utf8.ValidString(toks[0]) {
		t.Fatalf("Tokenize(long) = %q", toks)
	}
}

// The query side and the index side must agree: a document's tokens, queried
// one by one, find themselves again, whatever the input.
func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"SEC-12", "ERR_CONN_RESET SQLSTATE 40001", "1.22.1", "fooBar foo_bar", "Straße", "ＳＥＣ－１２", "a\u0301b", "\xff\xfe", "ǅemo İstanbul ﬁle"} {
		f.Add(s)
	}
	fold := cases.Fold()
	f.Fuzz(func(t *testing.T, s string) {
		toks := Tokenize(s)
		for _, tok := range toks {
			if tok == "" || len(tok) > MaxTokenBytes || !utf8.ValidString(tok) {
				t.Fatalf("bad token %q from %q", tok, s)
			}
			// Folded: upper and lower case of a token tokenize alike.
			if u := Tokenize(strings.ToUpper(tok)); len(tok) < MaxTokenBytes-8 && len(u) > 0 && u[0] != Tokenize(tok)[0] && fold.String(u[0]) == fold.String(tok) {
				t.Fatalf("token %q and its upper case %q differ", tok, u[0])
			}
			if len(tok) < MaxTokenBytes-8 && !slices.Contains(Tokenize(tok), tok) {
				t.Fatalf("token %q does not find itself: %q (from %q)", tok, Tokenize(tok), s)
			}
		}
	})
}

// The ASCII fast path folds exactly as the general path (Unicode case folding
// then NFKC) does, for every ASCII string, and declines everything else.
func FuzzFoldASCII(f *testing.F) {
	all := make([]byte, 128)
	for i := range all {
		all[i] = byte(i)
	}
	for _, s := range []string{string(all), "SEC-12", "ERR_CONN_RESET", "HTTPServer2", "already lower", "Straße", "K\u212a"} {
		f.Add(s)
	}
	fold := cases.Fold()
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := foldASCII(s)
		ascii := true
		for i := 0; i < len(s); i++ {
			ascii = ascii && s[i] < utf8.RuneSelf
		}
		if ok != ascii {
			t.Fatalf("foldASCII(%q) ok = %v, want %v", s, ok, ascii)
		}
		if want := norm.NFKC.String(fold.String(s)); ok && got != want {
			t.Fatalf("foldASCII(%q) = %q, the general path gives %q", s, got, want)
		}
	})
}

// refSplitParts is splitParts as first written (strings.FieldsFunc, runes):
// the byte-level version must split every string the same way.
func refSplitParts(s string) []string {
	var out []string
	for _, piece := range strings.FieldsFunc(s, isConnector) {
		rs := []rune(piece)
		start := 0
		for i := 1; i < len(rs); i++ {
			prev, cur := rs[i-1], rs[i]
			if (unicode.IsUpper(cur) && (unicode.IsLower(prev) || unicode.IsDigit(prev))) ||
				(unicode.IsUpper(prev) && unicode.IsUpper(cur) && i+1 < len(rs) && unicode.IsLower(rs[i+1])) {
				out = append(out, string(rs[start:i]))
				start = i
			}
		}
		out = append(out, string(rs[start:]))
	}
	return out
}

func FuzzSplitParts(f *testing.F) {
	for _, s := range []string{"ERR_CONN_RESET", "fooBar.v2Beta", "HTTPServer2", "a--b", ".x.", "ÉtéBlanc-ÇaVa", "日本/語", "\xff-A\xfeb", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := splitParts(s, nil), refSplitParts(s); !slices.Equal(got, want) {
			t.Fatalf("splitParts(%q) = %q, want %q", s, got, want)
		}
	})
}

func BenchmarkAnalyze(b *testing.B) {
	text := strings.Repeat("login fails after deploy with ERR_CONN_RESET on db01.prod, customer cust017 reports SEC-12 timeout again ", 4)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		Analyze("BT-1234", "Checkout fails with timeout", text)
	}
}
