package indexer

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	authzembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/retrieval"
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

	// Shares and blocks on tickets about to be deleted, and tuples left for an
	// id that is not indexed (a delete cut short by an older version).
	last := rows[len(rows)-1].ID
	extra := []authz.Tuple{
		{User: "user:erin", Relation: "viewer", Object: "ticket:" + rows[2].ID},
		{User: "user:bob", Relation: "blocked", Object: "ticket:" + rows[2].ID},
		{User: "user:erin", Relation: "editor", Object: "ticket:" + last},
		{User: "user:erin", Relation: "viewer", Object: "ticket:GONE-1"},
	}
	if err := engine.Write(ctx, extra, nil); err != nil {
		t.Fatal(err)
	}
	all := func(id string) int {
		n := 0
		for _, err := range engine.Read(ctx, authz.TupleFilter{Object: "ticket:" + id}) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}
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
	if n := all(rows[2].ID); n != 0 {
		t.Fatalf("%d tuples of deleted %s survive", n, rows[2].ID)
	}
	if sum := run([]Row{{Ticket: retrieval.Ticket{ID: "GONE-1"}, Deleted: true}}, false); sum.Unchanged != 1 || all("GONE-1") != 0 {
		t.Fatalf("delete of an unindexed id with tuples: %+v, %d tuples left", sum, all("GONE-1"))
	}

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
	if n := all(last); n != 0 {
		t.Fatalf("%d tuples of %s survive the full sync's delete", n, last)
	}
}

// failingWriter fails every write after the first n (fault injection).
type failingWriter struct {
	TupleWriter
	n int
}

func (f *failingWriter) Write(ctx context.Context, writes, deletes []authz.Tuple) error {
	if f.n == 0 {
		return errors.New("injected write failure")
	}
	f.n--
	return f.TupleWriter.Write(ctx, writes, deletes)
}

// TestPurgeTicket: every tuple of the ticket goes, in pages of PurgePage, and
// blocks last: a purge cut short leaves every block in place (access only
// narrows), and running it again finishes it. Other tickets are untouched.
func TestPurgeTicket(t *testing.T) {
	ctx := context.Background()
	engine, err := authzembedded.New(ctx, authzembedded.Config{Datastore: authzembedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	tuples := []authz.Tuple{
		{User: "project:p1", Relation: "project", Object: "ticket:T-1"},
		{User: "user:u0", Relation: "viewer", Object: "ticket:T-10"}, // a prefix of T-1's id is another ticket
	}
	for i := range 2*PurgePage + 10 {
		tuples = append(tuples, authz.Tuple{User: fmt.Sprintf("user:u%d", i), Relation: "viewer", Object: "ticket:T-1"})
	}
	for i := range 3 {
		tuples = append(tuples, authz.Tuple{User: fmt.Sprintf("user:b%d", i), Relation: "blocked", Object: "ticket:T-1"})
	}
	if err := engine.Write(ctx, tuples, nil); err != nil {
		t.Fatal(err)
	}
	count := func(id, relation string) int {
		n := 0
		for tu, err := range engine.Read(ctx, authz.TupleFilter{Object: "ticket:" + id}) {
			if err != nil {
				t.Fatal(err)
			}
			if relation == "" || tu.Relation == relation {
				n++
			}
		}
		return n
	}
	n, err := PurgeTicket(ctx, &failingWriter{TupleWriter: engine, n: 2}, "T-1")
	if err == nil || n != 2*PurgePage {
		t.Fatalf("cut-short purge: %d deleted, err %v", n, err)
	}
	if count("T-1", "blocked") != 3 || count("T-1", "") != 3+11 {
		t.Fatalf("after a cut-short purge: %d blocks of %d tuples", count("T-1", "blocked"), count("T-1", ""))
	}
	if n, err := PurgeTicket(ctx, engine, "T-1"); err != nil || n != 14 {
		t.Fatalf("second purge: %d %v", n, err)
	}
	if count("T-1", "") != 0 || count("T-10", "") != 1 {
		t.Fatalf("after the purge: T-1 %d, T-10 %d", count("T-1", ""), count("T-10", ""))
	}
}
