package retrieval_test

import (
	"errors"
	"math"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
)

func TestCheckUpsertNamesTheField(t *testing.T) {
	ok := retrieval.Ticket{ID: "T-1", Tenant: "acme", Project: "p"}
	vec := []float32{1, 0, 0}
	for _, tc := range []struct {
		field  string
		t      retrieval.Ticket
		chunks []retrieval.Chunk
	}{
		{"id", retrieval.Ticket{Tenant: "acme"}, nil},
		{"tenant", retrieval.Ticket{ID: "T-1"}, nil},
		{"title", retrieval.Ticket{ID: "T-1", Tenant: "acme", Title: "a\x00b"}, nil},
		{"body", retrieval.Ticket{ID: "T-1", Tenant: "acme", Body: "bad \xff utf-8"}, nil},
		{"chunks[1].ordinal", ok, []retrieval.Chunk{{Ordinal: 0, Vector: vec}, {Ordinal: 0, Vector: vec}}},
		{"chunks[0].ordinal", ok, []retrieval.Chunk{{Ordinal: -1, Vector: vec}}},
		{"chunks[0].text", ok, []retrieval.Chunk{{Text: "\xc3", Vector: vec}}},
		{"chunks[0].vector", ok, []retrieval.Chunk{{Vector: vec[:2]}}},
		{"chunks[0].vector", ok, []retrieval.Chunk{{Vector: []float32{float32(math.NaN()), 0, 0}}}},
	} {
		err := retrieval.CheckUpsert(tc.t, tc.chunks, 3)
		var fe *clearance.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("want a FieldError on %s, got %v", tc.field, err)
		}
	}
	if err := retrieval.CheckUpsert(ok, []retrieval.Chunk{{Ordinal: 0, Text: "ünïcode", Vector: vec}, {Ordinal: 1, Vector: vec}}, 3); err != nil {
		t.Fatalf("valid upsert refused: %v", err)
	}
}

func TestCheckSearchAndMove(t *testing.T) {
	v := []float32{1, 0}
	for field, r := range map[string]retrieval.SearchRequest{
		"vector": {Vector: []float32{1}, K: 1},
		"k":      {Vector: v, K: 0},
		"offset": {Vector: v, K: 1, Offset: -1},
	} {
		var fe *clearance.FieldError
		if err := retrieval.CheckSearch(r, 2); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("want a FieldError on %s, got %v", field, err)
		}
	}
	if err := retrieval.CheckMove("", "p"); !errors.Is(err, clearance.ErrInvalid) {
		t.Errorf("empty id: %v", err)
	}
	if err := retrieval.CheckMove("T-1", "p\x00"); !errors.Is(err, clearance.ErrInvalid) {
		t.Errorf("NUL in project: %v", err)
	}
	if (retrieval.Filter{Tenant: "acme"}).Empty() != true || (retrieval.Filter{Tenant: "acme", Tickets: []string{"x"}}).Empty() {
		t.Error("Filter.Empty")
	}
}
