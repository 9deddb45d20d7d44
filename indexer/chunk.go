package indexer

import (
	"unicode"
	"unicode/utf8"

	"github.com/clearance-dev/clearance/retrieval"
)

// Default chunk shape: about 200 words (roughly 260 tokens) with 40 words of
// overlap, small enough for any embedding model's context and large enough to
// keep a paragraph together.
const (
	DefaultChunkWords   = 200
	DefaultChunkOverlap = 40
)

// maxWordBytes caps how long one "word" may be when counting: a run without
// spaces (a base64 blob, a URL list) counts as one word per maxWordBytes, so a
// chunk never grows without bound.
const maxWordBytes = 64

// Chunker splits a ticket's body into overlapping windows of words. Words is the
// approximation of tokens: chunks hold at most Words words, and consecutive
// chunks share Overlap words. The zero value uses the defaults.
type Chunker struct {
	Words   int
	Overlap int
}

func (c Chunker) shape() (words, step int) {
	words = c.Words
	if words <= 0 {
		words = DefaultChunkWords
	}
	overlap := c.Overlap
	if c.Words <= 0 && c.Overlap == 0 {
		overlap = DefaultChunkOverlap
	}
	if overlap < 0 {
		overlap = 0
	}
	if overlap >= words {
		overlap = words / 2
	}
	return words, words - overlap
}

// Chunk returns the stored text of each chunk of t; chunk i has ordinal i. Chunks
// are slices of the original body (whitespace inside a chunk is kept), so the
// same body always gives the same chunks. An empty body gives one empty chunk:
// the ticket is still findable by its title, which EmbedText adds to every
// chunk.
func (c Chunker) Chunk(t retrieval.Ticket) []string {
	spans := wordSpans(t.Body)
	if len(spans) == 0 {
		return []string{""}
	}
	words, step := c.shape()
	n := len(spans)
	out := make([]string, 0, (n+step-1)/step)
	for start := 0; ; start += step {
		end := min(start+words, n)
		out = append(out, t.Body[spans[start].from:spans[end-1].to])
		if end == n {
			return out
		}
	}
}

// Count returns len(c.Chunk(t)) without building the chunks.
func (c Chunker) Count(t retrieval.Ticket) int {
	n := len(wordSpans(t.Body))
	if n == 0 {
		return 1
	}
	words, step := c.shape()
	if n <= words {
		return 1
	}
	return 1 + (n-words+step-1)/step
}

// EmbedText is the text embedded for a chunk: the title, a blank line and the
// chunk, so every chunk carries the ticket's subject.
func EmbedText(title, chunk string) string {
	switch {
	case title == "":
		return chunk
	case chunk == "":
		return title
	}
	return title + "\n\n" + chunk
}

type span struct{ from, to int }

// wordSpans returns the byte ranges of the words of s, splitting runs longer than
// maxWordBytes at rune boundaries.
func wordSpans(s string) []span {
	var out []span
	start := -1
	for i, r := range s {
		if unicode.IsSpace(r) {
			if start >= 0 {
				out = append(out, span{start, i})
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		} else if i-start+utf8.RuneLen(r) > maxWordBytes {
			out = append(out, span{start, i})
			start = i
		}
	}
	if start >= 0 {
		out = append(out, span{start, len(s)})
	}
	return out
}
