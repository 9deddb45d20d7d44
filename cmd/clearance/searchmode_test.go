package main

import (
	"errors"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
	"github.com/clearance-dev/clearance/retrieval/qdrant"
)

func TestSearchModeFlag(t *testing.T) {
	emb, err := storeembedded.Open(t.Context(), storeembedded.Config{Meta: retrieval.IndexMeta{Model: "m", Dim: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	vectorOnly := struct{ retrieval.Store }{emb}
	for _, tc := range []struct {
		flag  string
		store any
		fast  bool // the store's lexical arm is as fast as its vectors
		want  filter.Mode
		err   error
	}{
		{"auto", emb, true, filter.ModeHybrid, nil},
		{"auto", vectorOnly, false, filter.ModeVector, nil},
		{"lexical", emb, true, filter.ModeLexical, nil},
		{"vector", vectorOnly, false, filter.ModeVector, nil},
		{"hybrid", vectorOnly, false, "", clearance.ErrUnsupported},
		{"lexical", vectorOnly, false, "", clearance.ErrUnsupported},
		// pgvector has a lexical arm, slower than its vectors: every mode is
		// allowed, auto stays vector.
		{"auto", (*pgvector.Store)(nil), false, filter.ModeVector, nil},
		{"hybrid", (*pgvector.Store)(nil), false, filter.ModeHybrid, nil},
		{"lexical", (*pgvector.Store)(nil), false, filter.ModeLexical, nil},
		// Qdrant: a collection without the lexical index (created before it)
		// refuses lexical defaults at start; auto stays vector.
		{"auto", &qdrant.Store{}, false, filter.ModeVector, nil},
		{"hybrid", &qdrant.Store{}, false, "", clearance.ErrUnsupported},
	} {
		got, err := searchMode(tc.flag, tc.store, tc.fast)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("searchMode(%s, %T) = %q, %v; want %q, %v", tc.flag, tc.store, got, err, tc.want, tc.err)
		}
	}
}
