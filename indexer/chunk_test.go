package indexer

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
)

func words(n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = fmt.Sprintf("w%d", i)
	}
	return strings.Join(w, " ")
}

func TestChunkWindows(t *testing.T) {
	c := Chunker{Words: 10, Overlap: 3}
	for _, n := range []int{1, 9, 10, 11, 17, 18, 100, 1001} {
		tk := retrieval.Ticket{Title: "t", Body: words(n)}
		chunks := c.Chunk(tk)
		if got := c.Count(tk); got != len(chunks) {
			t.Errorf("n=%d: Count=%d, Chunk gave %d", n, got, len(chunks))
		}
		// Every word appears, in order, each chunk has at most 10 words, and
		// consecutive chunks share exactly 3 words (the last may share more).
		seen := 0
		for i, ch := range chunks {
			f := strings.Fields(ch)
			if len(f) > 10 || len(f) == 0 {
				t.Fatalf("n=%d chunk %d has %d words", n, i, len(f))
			}
			if i > 0 {
				prev := strings.Fields(chunks[i-1])
				if f[0] != prev[7] {
					t.Fatalf("n=%d chunk %d starts at %s, want overlap from %s", n, i, f[0], prev[7])
				}
			}
			last := f[len(f)-1]
			var k int
			fmt.Sscanf(last, "w%d", &k)
			seen = k + 1
		}
		if seen != n {
			t.Errorf("n=%d: chunks cover %d words", n, seen)
		}
		if n > 10 && len(strings.Fields(chunks[len(chunks)-1])) < 4 {
			// The tail chunk must hold more than the overlap, or it repeats
			// the previous chunk's end only.
			t.Errorf("n=%d: tail chunk %q holds only overlap", n, chunks[len(chunks)-1])
		}
	}
}

func TestChunkKeepsTextAndIsStable(t *testing.T) {
	body := "First line.\n\n  Second   paragraph with\ttabs.  "
	c := Chunker{Words: 3, Overlap: 1}
	a := c.Chunk(retrieval.Ticket{Body: body})
	b := c.Chunk(retrieval.Ticket{Body: body})
	if strings.Join(a, "|") != strings.Join(b, "|") {
		t.Fatal("chunking is not deterministic")
	}
	if a[0] != "First line.\n\n  Second" {
		t.Errorf("chunk 0 = %q: want original whitespace kept", a[0])
	}
	if !strings.HasSuffix(a[len(a)-1], "tabs.") {
		t.Errorf("last chunk %q", a[len(a)-1])
	}
}

func TestChunkEmptyAndLongWords(t *testing.T) {
	c := Chunker{}
	if got := c.Chunk(retrieval.Ticket{Title: "only a title", Body: " \n "}); len(got) != 1 || got[0] != "" {
		t.Fatalf("empty body: %q", got)
	}
	if got := EmbedText("only a title", ""); got != "only a title" {
		t.Errorf("EmbedText of empty chunk = %q", got)
	}
	if got := EmbedText("Title", "text"); got != "Title\n\ntext" {
		t.Errorf("EmbedText = %q", got)
	}
	// A 1 MiB run without spaces counts as many words, so it is split.
	blob := strings.Repeat("é", 1<<19)
	chunks := Chunker{Words: 100, Overlap: 10}.Chunk(retrieval.Ticket{Body: blob})
	if len(chunks) < 100 {
		t.Fatalf("blob gave %d chunks", len(chunks))
	}
	for i, ch := range chunks {
		if len(ch) > 100*maxWordBytes {
			t.Fatalf("chunk %d is %d bytes", i, len(ch))
		}
		if !strings.HasPrefix(ch, "é") {
			t.Fatalf("chunk %d split a rune", i)
		}
	}
}

func TestValidateTicket(t *testing.T) {
	ok := retrieval.Ticket{ID: "T-1", Tenant: "acme", Project: "apollo", Title: "x", Body: "y", UpdatedAt: time.Now()}
	if err := ValidateTicket(ok, "tickets[0]"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field string
		edit  func(*retrieval.Ticket)
	}{
		{"tickets[2].id", func(t *retrieval.Ticket) { t.ID = "" }},
		{"tickets[2].id", func(t *retrieval.Ticket) { t.ID = "-T" }},
		{"tickets[2].id", func(t *retrieval.Ticket) { t.ID = strings.Repeat("a", 129) }},
		{"tickets[2].tenant", func(t *retrieval.Ticket) { t.Tenant = "a b" }},
		{"tickets[2].project", func(t *retrieval.Ticket) { t.Project = "x:y" }},
		{"tickets[2].title", func(t *retrieval.Ticket) { t.Title = "\xff" }},
		{"tickets[2].title", func(t *retrieval.Ticket) { t.Title, t.Body = " ", "" }},
		{"tickets[2].body", func(t *retrieval.Ticket) { t.Body = strings.Repeat("a", MaxBodyBytes+1) }},
		{"tickets[2].updated_at", func(t *retrieval.Ticket) { t.UpdatedAt = time.Now().AddDate(1, 0, 0) }},
	}
	for _, c := range cases {
		tk := ok
		c.edit(&tk)
		err := ValidateTicket(tk, "tickets[2]")
		var fe *clearance.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, clearance.ErrInvalid) {
			t.Errorf("want FieldError on %s, got %v", c.field, err)
		}
	}
	if err := (Row{Ticket: retrieval.Ticket{ID: "T-9"}, Deleted: true}).Validate(""); err != nil {
		t.Errorf("deletion with only an id: %v", err)
	}
}

func TestDecodeRow(t *testing.T) {
	r, err := DecodeRow([]byte(`{"id":"T-1","tenant":"a","project":"p","title":"x","body":"","updated_at":"2026-11-01T10:00:00Z","deleted":true}`), "")
	if err != nil || !r.Deleted || r.ID != "T-1" || r.UpdatedAt.Year() != 2026 {
		t.Fatalf("%+v %v", r, err)
	}
	for in, field := range map[string]string{
		`{"id":"T-1","color":"red"}`: "line 3.color",
		`{"id":7}`:                   "line 3.id",
		`{"id":"T-1"`:                "line 3",
		`{"id":"T-1"} {}`:            "line 3",
		`{"updated_at":"yesterday"}`: "line 3.updated_at",
		`{"id":"T-1","ID":"T-2"}`:    "line 3.ID",
		`{"id":"T-1","id":"T-2"}`:    "line 3.id",
		"{\"id\":\"T-\xff\"}":        "line 3.id",
	} {
		_, err := DecodeRow([]byte(in), "line 3")
		var fe *clearance.FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: want field %q, got %v", in, field, err)
		}
	}
}

func TestContentHash(t *testing.T) {
	a := retrieval.Ticket{ID: "T-1", Tenant: "acme", Project: "apollo", Title: "x", Body: "y"}
	b := a
	b.UpdatedAt = time.Now()
	b.ID = "T-2"
	if ContentHash(a) != ContentHash(b) {
		t.Error("hash depends on id or time")
	}
	moved := a
	moved.Project = "zeus"
	if ContentHash(a) == ContentHash(moved) || !sameContent(ContentHash(a), ContentHash(moved)) {
		t.Error("a move must change the hash but keep its content part")
	}
	for _, edit := range []func(*retrieval.Ticket){
		func(t *retrieval.Ticket) { t.Tenant = "other" },
		func(t *retrieval.Ticket) { t.Title = "xy"; t.Body = "" },
		func(t *retrieval.Ticket) { t.Body = "y " },
	} {
		c := a
		edit(&c)
		if sameContent(ContentHash(a), ContentHash(c)) {
			t.Errorf("edit %+v kept the content hash", c)
		}
	}
}
