package indexer

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	authzembedded "github.com/clearance-dev/clearance/authz/embedded"
)

// TestTuplesFollowTheIndex: with a TupleWriter (clearance owning the tuples, as
// with the embedded engine) every indexed ticket has exactly its ticket#project
// tuple in the engine, through moves, deletes and a full sync's deletions.
func TestTuplesFollowTheIndex(t *testing.T) {
	ctx := context.Background()
	engine, err := authzembedded.New(ctx, authzembedded.Config{Datastore: authzembedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "index"), newEmbedder())
	defer s.Close()
	run := func(rows []Row, full bool) Summary {
		t.Helper()
		file := filepath.Join(dir, "src.jsonl")
		writeJSONL(t, file, rows)
		src, err := NewJSONL(JSONLConfig{Path: file, BatchSize: 7})
		if err != nil {
			t.Fatal(err)
		}
		ix, err := New(Config{Store: s, Embedder: newEmbedder(), Chunker: Chunker{Words: 20, Overlap: 5}, Workers: 3, EmbedBatch: 8, Full: full, Tuples: engine})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := ix.Run(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	// check compares the engine's ticket#project tuples with the index.
	check := func(want map[string]string) {
		t.Helper()
		for id, project := range want {
			var got []string
			for tu, err := range engine.Read(ctx, authz.TupleFilter{Object: "ticket:" + id, Relation: "project"}) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, tu.User)
			}
			if project == "" {
				if len(got) != 0 {
					t.Errorf("%s: deleted, but the engine still has %v", id, got)
				}
				continue
			}
			if !slices.Equal(got, []string{"project:" + project}) {
				t.Errorf("%s: engine has %v, index has project %s", id, got, project)
			}
			tk, err := s.Get(ctx, id)
			if err != nil || tk.Project != project {
				t.Errorf("%s: index has %q (%v), want %s", id, tk.Project, err, project)
			}
		}
	}

	rows := genTickets(5, 40, 60)
	run(rows, false)
	want := map[string]string{}
	for _, r := range rows {
		want[r.ID] = r.Project
	}
	check(want)

	// Move two tickets (one with new content, one a pure move), delete one.
	rows[0].Project, rows[0].Body = rows[0].Tenant+"-moved", rows[0].Body+" more words"
	rows[1].Project = rows[1].Tenant + "-moved"
	rows[2].Deleted = true
	sum := run(rows[:3], false)
	if sum.Moved != 1 || sum.Embedded != 1 || sum.Deleted != 1 {
		t.Fatalf("second run: %+v", sum)
	}
	want[rows[0].ID], want[rows[1].ID], want[rows[2].ID] = rows[0].Project, rows[1].Project, ""
	check(want)

	// A full sync without the last five tickets deletes them and their tuples.
	kept := rows[3 : len(rows)-5]
	if sum := run(kept, true); sum.Deleted != 7 { // 5 missing + the two moved ones not in this source
		t.Fatalf("full sync: %+v", sum)
	}
	for _, r := range rows {
		want[r.ID] = ""
	}
	for _, r := range kept {
		want[r.ID] = r.Project
	}
	check(want)
}
