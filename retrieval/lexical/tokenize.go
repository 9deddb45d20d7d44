// Package lexical is clearance's tokenizer for exact-term (lexical) search.
//
// People search tickets by exact terms: ticket keys (SEC-12), error codes
// (ERR_CONN_RESET, SQLSTATE 40001), dotted versions (1.22.1), host names and
// identifiers (foo_bar, fooBar). Tokenize keeps each such compound whole and
// also emits its parts, so "SEC-12" matches a ticket that says "sec-12" first
// and one that only says "SEC" and "12" later, and "conn reset" still finds
// ERR_CONN_RESET. Text is NFKC-normalized (full-width forms, ligatures) and
// Unicode case-folded (Straße and STRASSE meet). There is no stemming and no
// stop list: the lexical arm is for exact terms; meaning is the vector arm's
// job. Scripts without spaces (Chinese, Japanese) come out as one token per
// run of letters, which matches exact phrases only.
//
// Stores index and query with the same function, so the two always agree.
package lexical

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// MaxTokenBytes bounds one token; longer runs (base64 blobs, hashes pasted
// whole) are cut at a rune boundary so postings stay small and keyed by a
// bounded string.
const MaxTokenBytes = 64

// isWord reports whether r belongs inside a token: letters, digits and
// combining marks (so accents of decomposed text stay with their letter).
func isWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// isConnector reports whether r joins two word runs into one compound when it
// sits between them: SEC-12, ERR_CONN_RESET, 1.22.1, db01.prod, a/b, ns:key,
// user@host.
func isConnector(r rune) bool {
	switch r {
	case '-', '_', '.', '/', ':', '@':
		return true
	}
	return false
}

// Tokenize returns the tokens of text in order, duplicates kept (callers count
// term frequencies from them). Each compound yields its folded whole first and
// then, when it has more than one part, each part: "ERR_CONN_RESET" gives
// err_conn_reset, err, conn, reset; "fooBar" gives foobar, foo, bar;
// "HTTPServer2" gives httpserver2, http, server2.
func Tokenize(text string) []string {
	if text == "" {
		return nil
	}
	text = norm.NFKC.String(text)
	fold := cases.Fold()
	var out []string
	emit := func(s string) {
		if f, ok := foldASCII(s); ok {
			// The common case, and the indexing cost: x/text's folder took
			// most of a pgvector bulk load's tokenizing time.
			if f = clip(f); f != "" {
				out = append(out, f)
			}
			return
		}
		// Folding and NFKC can undo each other's work (ǰ folds to j plus a
		// combining caron, which NFKC recomposes); iterate to the fixed point so
		// a token always tokenizes to itself.
		for range 4 {
			n := norm.NFKC.String(fold.String(s))
			if n == s {
				break
			}
			s = n
		}
		if s = clip(s); s != "" {
			out = append(out, s)
		}
	}
	var parts []string
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRuneInString(text[i:])
		if !isWord(r) {
			i += n
			continue
		}
		// A compound: word runs joined by single connectors.
		start, end := i, i+n
		for end < len(text) {
			r, n := utf8.DecodeRuneInString(text[end:])
			if isWord(r) {
				end += n
				continue
			}
			if isConnector(r) {
				if r2, _ := utf8.DecodeRuneInString(text[end+n:]); end+n < len(text) && isWord(r2) {
					end += n
					continue
				}
			}
			break
		}
		whole := text[start:end]
		i = end
		emit(whole)
		parts = splitParts(whole, parts[:0])
		if len(parts) > 1 {
			for _, p := range parts {
				emit(p)
			}
		}
	}
	return out
}

// Terms returns the distinct tokens of a query, in first-seen order.
func Terms(query string) []string {
	toks := Tokenize(query)
	seen := make(map[string]bool, len(toks))
	out := toks[:0]
	for _, t := range toks {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// splitParts splits a compound on its connectors and on case changes inside
// each piece (fooBar -> foo, Bar; HTTPServer -> HTTP, Server). Digits stay with
// the letters before them (ipv6, v2), so only real boundaries split.
func splitParts(s string, out []string) []string {
	// Connectors are ASCII, and no byte of a multi-byte UTF-8 sequence is, so
	// splitting the bytes is splitting the runes (strings.FieldsFunc, without
	// its allocation).
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && !isConnector(rune(s[i])) {
			continue
		}
		if i > start {
			out = splitCase(s[start:i], out)
		}
		start = i + 1
	}
	return out
}

func splitCase(s string, out []string) []string {
	if _, ok := foldASCII(s); ok {
		return splitCaseASCII(s, out)
	}
	rs := []rune(s)
	start := 0
	for i := 1; i < len(rs); i++ {
		prev, cur := rs[i-1], rs[i]
		boundary := false
		switch {
		case unicode.IsUpper(cur) && (unicode.IsLower(prev) || unicode.IsDigit(prev)):
			boundary = true // fooBar, v2Beta
		case unicode.IsUpper(prev) && unicode.IsUpper(cur) && i+1 < len(rs) && unicode.IsLower(rs[i+1]):
			boundary = true // HTTPServer: the S starts a word
		}
		if boundary {
			out = append(out, string(rs[start:i]))
			start = i
		}
	}
	return append(out, string(rs[start:]))
}

// splitCaseASCII is splitCase for ASCII s, where a rune is a byte and the
// Unicode classes are the ASCII ranges; the parts are substrings of s.
func splitCaseASCII(s string, out []string) []string {
	upper := func(c byte) bool { return 'A' <= c && c <= 'Z' }
	lower := func(c byte) bool { return 'a' <= c && c <= 'z' }
	digit := func(c byte) bool { return '0' <= c && c <= '9' }
	start := 0
	for i := 1; i < len(s); i++ {
		prev, cur := s[i-1], s[i]
		if (upper(cur) && (lower(prev) || digit(prev))) ||
			(upper(prev) && upper(cur) && i+1 < len(s) && lower(s[i+1])) {
			out = append(out, s[start:i])
			start = i
		}
	}
	return append(out, s[start:])
}

// foldASCII returns the case folding of an ASCII s (ok false otherwise): for
// ASCII, Unicode case folding maps A-Z to a-z and nothing else, and NFKC is the
// identity, so this is what the general path computes, without its
// allocations.
func foldASCII(s string) (string, bool) {
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return "", false
		}
		upper = upper || ('A' <= c && c <= 'Z')
	}
	if !upper {
		return s, true
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b), true
}

// clip cuts s to at most MaxTokenBytes at a rune boundary.
func clip(s string) string {
	if len(s) <= MaxTokenBytes {
		return s
	}
	cut := MaxTokenBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
