package retrieval

import (
	"context"
	"fmt"
	"math"
	"unicode"
	"unicode/utf8"
)

// HashingConfig configures the built-in hashing embedder.
type HashingConfig struct {
	// Dim is the vector dimension (default 384).
	Dim int
}

// Hashing is the default embedder: deterministic feature hashing of words, word
// bigrams and character n-grams, weighted so rare, specific words (identifiers,
// error codes, long domain words) dominate and stop words barely count. It needs
// no model files and embeds a few thousand chunks per second per core, and gives
// good lexical recall: a query's best hits are the tickets that share its rare
// words. It has no notion of synonyms; use an OpenAI-compatible model for that.
type Hashing struct {
	dim int
}

// NewHashing returns a hashing embedder.
func NewHashing(cfg HashingConfig) *Hashing {
	if cfg.Dim <= 0 {
		cfg.Dim = 384
	}
	return &Hashing{dim: cfg.Dim}
}

// Dim is the vector dimension.
func (h *Hashing) Dim() int { return h.dim }

// Model identifies the embedding space; the version changes whenever features or
// weights change, so an index built by another version is refused.
func (h *Hashing) Model() string { return fmt.Sprintf("hashing-v2-%d", h.dim) }

// Embed returns one unit vector per text.
func (h *Hashing) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	backing := make([]float32, len(texts)*h.dim)
	var buf []byte
	for i, t := range texts {
		if i%64 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		v := backing[i*h.dim : (i+1)*h.dim : (i+1)*h.dim]
		buf = h.embed(t, v, buf)
		out[i] = v
	}
	return out, nil
}

// Feature weights, relative to a plain word.
const (
	bigramWeight = 0.6
	ngramWeight  = 0.25 // shared by all character n-grams of one word
	minNgram     = 3
	maxNgram     = 5
)

func (h *Hashing) embed(text string, v []float32, buf []byte) []byte {
	var prev uint64
	havePrev := false
	rest := text
	for len(rest) > 0 {
		var word []byte
		word, rest, buf = nextWord(rest, buf[:0])
		if len(word) == 0 {
			continue
		}
		w := wordWeight(word)
		hw := fnv(0x77, word)
		h.add(v, hw, w)
		if havePrev {
			h.add(v, mix(prev, hw), bigramWeight*w)
		}
		prev, havePrev = hw, true
		h.addNgrams(v, word, w)
	}
	if !havePrev {
		// No words at all: a fixed unit vector, so every embedding is unit length.
		v[0] = 1
		return buf
	}
	// Sublinear term frequency per dimension, then unit length.
	var norm float64
	for i, x := range v {
		y := float32(math.Copysign(math.Log1p(math.Abs(float64(x))), float64(x)))
		v[i] = y
		norm += float64(y) * float64(y)
	}
	if norm == 0 {
		v[0] = 1
		return buf
	}
	inv := float32(1 / math.Sqrt(norm))
	for i := range v {
		v[i] *= inv
	}
	return buf
}

// add puts a signed feature into the vector: the hash picks the dimension and the
// sign, so collisions cancel out on average instead of piling up.
func (h *Hashing) add(v []float32, hash uint64, w float32) {
	// The high 32 bits pick the dimension by multiply-shift (no division), the low
	// bit the sign.
	i := (hash >> 32) * uint64(h.dim) >> 32
	if hash&1 == 1 {
		w = -w
	}
	v[i] += w
}

func (h *Hashing) addNgrams(v []float32, word []byte, w float32) {
	// "<word>" so prefixes and suffixes are features of their own.
	n := len(word) + 2
	if n < minNgram+1 {
		return
	}
	count := 0
	for size := minNgram; size <= maxNgram; size++ {
		if n >= size {
			count += n - size + 1
		}
	}
	each := ngramWeight * w / float32(count)
	padded := func(i int) byte {
		switch {
		case i == 0:
			return '<'
		case i == n-1:
			return '>'
		}
		return word[i-1]
	}
	// One FNV pass per start position yields the 3-, 4- and 5-gram there; the
	// size is mixed in afterwards so equal prefixes of other sizes differ.
	for start := 0; start+minNgram <= n; start++ {
		hash := uint64(14695981039346656037)
		for i := start; i < start+maxNgram && i < n; i++ {
			hash ^= uint64(padded(i))
			hash *= 1099511628211
			if size := i - start + 1; size >= minNgram {
				h.add(v, mix(hash, uint64(size)), each)
			}
		}
	}
}

// nextWord lowercases the next run of letters and digits of s into buf. ASCII
// takes a fast path; other runes go through unicode.
func nextWord(s string, buf []byte) (word []byte, rest string, out []byte) {
	i := 0
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			if isAlnumASCII(c) {
				break
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			break
		}
		i += size
	}
	for i < len(s) {
		if c := s[i]; c < utf8.RuneSelf {
			if !isAlnumASCII(c) {
				break
			}
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf = append(buf, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			break
		}
		buf = utf8.AppendRune(buf, unicode.ToLower(r))
		i += size
	}
	return buf, s[i:], buf
}

func isAlnumASCII(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// wordWeight approximates inverse document frequency without a corpus: stop words
// and very short words say little, words with digits (error codes, ids, versions)
// and long words say a lot.
func wordWeight(w []byte) float32 {
	if isStopWord(w) {
		return 0.05
	}
	digits := false
	for _, c := range w {
		if c >= '0' && c <= '9' {
			digits = true
			break
		}
	}
	switch {
	case digits && len(w) >= 3:
		return 2.0
	case len(w) <= 2:
		return 0.3
	case len(w) >= 8:
		return 1.6
	case len(w) >= 6:
		return 1.3
	}
	return 1.0
}

func fnv(seed byte, b []byte) uint64 {
	hash := uint64(14695981039346656037) ^ uint64(seed)
	for _, c := range b {
		hash ^= uint64(c)
		hash *= 1099511628211
	}
	return hash
}

// mix combines two word hashes into a bigram hash (order matters).
func mix(a, b uint64) uint64 {
	x := a*0x9e3779b97f4a7c15 ^ b
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 29
	return x
}

// isStopWord reports the most frequent English function words (a switch on
// string(w) compiles to a lookup without allocating).
func isStopWord(w []byte) bool {
	switch string(w) {
	case "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could",
		"did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "his",
		"i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "not", "of", "on",
		"or", "our", "she", "so", "than", "that", "the", "their", "them", "then",
		"there", "these", "they", "this", "to", "too", "up", "us", "was", "we", "were",
		"what", "when", "where", "which", "while", "who", "why", "will", "with",
		"would", "you", "your", "after", "before", "also", "all", "any", "some",
		"should", "just", "about", "again", "still", "only", "very", "more", "most":
		return true
	}
	return false
}
