package filter

import (
	"testing"

	"github.com/clearance-dev/clearance/retrieval"
)

// The lexical margin compares the top hit with the best hit of another
// ticket (another chunk of the same ticket is the same known item), and is 1
// when there is nothing to compare with.
func TestLexicalMargin(t *testing.T) {
	h := func(id string, ord int, score float32) retrieval.Hit {
		return retrieval.Hit{TicketID: id, Ordinal: ord, Score: score}
	}
	for _, tc := range []struct {
		name string
		hits []retrieval.Hit
		want float64
	}{
		{"none", nil, 1},
		{"one hit", []retrieval.Hit{h("A", 0, 8)}, 1},
		{"one ticket", []retrieval.Hit{h("A", 0, 8), h("A", 1, 2)}, 1},
		{"runner-up ticket", []retrieval.Hit{h("A", 0, 8), h("B", 0, 2)}, 4},
		{"same ticket skipped", []retrieval.Hit{h("A", 0, 8), h("A", 1, 7), h("B", 0, 2), h("C", 0, 1)}, 4},
		{"tie", []retrieval.Hit{h("A", 0, 3), h("B", 0, 3)}, 1},
	} {
		if got := lexicalMargin(tc.hits); got != tc.want {
			t.Errorf("%s: margin %g, want %g", tc.name, got, tc.want)
		}
	}
}
