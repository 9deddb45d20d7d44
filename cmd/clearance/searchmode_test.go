package main

import (
	"errors"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
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
		want  filter.Mode
		err   error
	}{
		{"auto", emb, filter.ModeHybrid, nil},
		{"auto", vectorOnly, filter.ModeVector, nil},
		{"lexical", emb, filter.ModeLexical, nil},
		{"vector", vectorOnly, filter.ModeVector, nil},
		{"hybrid", vectorOnly, "", clearance.ErrUnsupported},
		{"lexical", vectorOnly, "", clearance.ErrUnsupported},
		// pgvector has a lexical arm: every mode is allowed, auto is hybrid.
		{"auto", (*pgvector.Store)(nil), filter.ModeHybrid, nil},
		{"hybrid", (*pgvector.Store)(nil), filter.ModeHybrid, nil},
		{"lexical", (*pgvector.Store)(nil), filter.ModeLexical, nil},
	} {
		got, err := searchMode(tc.flag, tc.store)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("searchMode(%s, %T) = %q, %v; want %q, %v", tc.flag, tc.store, got, err, tc.want, tc.err)
		}
	}
}
