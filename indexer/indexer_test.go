package indexer

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
	"github.com/clearance-dev/clearance/testdata"
)

func newTestIndexer(t testing.TB, s retrieval.Store, emb retrieval.Embedder, st State, full bool) *Indexer {
	t.Helper()
	ix, err := New(Config{Store: s, Embedder: emb, State: st, Chunker: Chunker{Words: 20, Overlap: 5}, Workers: 3, EmbedBatch: 16, Full: full})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func runOnce(t testing.TB, s retrieval.Store, st State, src Source, full bool) Summary {
	t.Helper()
	sum, err := newTestIndexer(t, s, newEmbedder(), st, full).Run(context.Background(), src)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return sum
}

func TestJSONLIncrementalSync(t *testing.T) {
	jsonlIncrementalSync(t, func(dir string) retrieval.Store { return openStore(t, dir, newEmbedder()) })
}

// TestJSONLIncrementalSyncPGVector: the same on pgvector, whose incremental runs
// look up each shard's tickets in one query (RefLookup) instead of per row.
func TestJSONLIncrementalSyncPGVector(t *testing.T) {
	url := testenv.DatabaseURL(t)
	jsonlIncrementalSync(t, func(string) retrieval.Store { return openPGVector(t, url) })
}

// pgvector answers a shard's lookups in one query.
var _ RefLookup = (*pgvector.Store)(nil)

func openPGVector(t *testing.T, url string) retrieval.Store {
	t.Helper()
	emb := newEmbedder()
	s, err := pgvector.Open(context.Background(), pgvector.Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jsonlIncrementalSync(t *testing.T, open func(dir string) retrieval.Store) {
	dir := t.TempDir()
	file := filepath.Join(dir, "src", "tickets.jsonl")
	rows := genTickets(1, 300, 120)
	writeJSONL(t, file, rows,
		`{"id":"T-bad1","tenant":"acme","project":"apollo","title":"x","color":"red"}`,
		`{"id":"T-bad2","tenant":"acme","project":"no/slash","title":"x"}`,
		`not json`,
		``,
	)
	src, err := NewJSONL(JSONLConfig{Path: file, BatchSize: 25})
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewFileState(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	s := open(filepath.Join(dir, "data", "index"))
	defer s.Close()
	c := Chunker{Words: 20, Overlap: 5}

	sum := runOnce(t, s, st, src, false)
	if sum.Seen != 303 || sum.Embedded != 300 || sum.Failed != 3 || sum.Unchanged != 0 {
		t.Fatalf("first run: %+v", sum)
	}
	wantRefs := map[string]string{"tickets.jsonl:301": "color", "tickets.jsonl:302": "project", "tickets.jsonl:303": "invalid JSON"}
	for _, f := range sum.Failures {
		if w, ok := wantRefs[f.Ref]; !ok || !strings.Contains(f.Reason, w) {
			t.Errorf("failure %s: want reason with %q", f, w)
		}
	}
	checkStore(t, s, expected(rows), c)

	// Unchanged file: the watermark says it was read to its end.
	if sum := runOnce(t, s, st, src, false); sum.Seen != 0 || sum.Embedded != 0 {
		t.Fatalf("second run on an unchanged file: %+v", sum)
	}

	// Edit, move, delete by flag, drop a row, duplicate a row (the later one wins).
	v2 := append([]Row(nil), rows...)
	v2[0].Body += " appended words"
	v2[1].Project = "tenant1-p9"   // a pure move (tenant1 is rows[1]'s tenant)
	v2[2].Deleted = true           // delete by flag
	v2[3].Tenant = "tenant9"       // tenant change: re-embedded
	v2[3].Project = "tenant9-p0"   //
	dropped := v2[4]               // missing: only a full sync deletes it
	v2 = append(v2[:4], v2[5:]...) //
	dup := v2[10]
	dup.Title = "retitled"
	v2 = append(v2, dup, Row{Ticket: retrieval.Ticket{ID: "T-never"}, Deleted: true})
	writeJSONL(t, file, v2)
	sum = runOnce(t, s, st, src, false)
	if sum.Embedded != 3 || sum.Moved != 1 || sum.Deleted != 1 || sum.Failed != 0 || sum.Unchanged != len(v2)-5 {
		t.Fatalf("incremental run: %+v", sum)
	}
	want := expected(v2)
	want[dropped.ID] = dropped.Ticket
	checkStore(t, s, want, c)

	// A moved ticket's hash is stale in its project part only: not re-embedded.
	// (The duplicated ticket's two versions are both written again, in order.)
	writeJSONL(t, file, v2, "")
	if sum := runOnce(t, s, st, src, false); sum.Embedded != 2 || sum.Moved != 0 || sum.Unchanged != len(v2)-2 {
		t.Fatalf("run after move: %+v", sum)
	}

	// Full sync: the dropped row is deleted.
	sum = runOnce(t, s, st, src, true)
	if sum.Deleted != 1 || sum.Embedded != 2 {
		t.Fatalf("full sync: %+v", sum)
	}
	checkStore(t, s, expected(v2), c)
}

func TestDuplicateIDsApplyInOrder(t *testing.T) {
	duplicateIDsApplyInOrder(t, openStore(t, "", newEmbedder()))
}

func TestDuplicateIDsApplyInOrderPGVector(t *testing.T) {
	duplicateIDsApplyInOrder(t, openPGVector(t, testenv.DatabaseURL(t)))
}

func duplicateIDsApplyInOrder(t *testing.T, s retrieval.Store) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t.jsonl")
	a := genTickets(2, 1, 30)[0]
	b := a
	b.Body = "second version"
	del := Row{Ticket: retrieval.Ticket{ID: a.ID}, Deleted: true}
	defer s.Close()
	for _, seq := range [][]Row{{a, b}, {a, del}, {a, b, del, a}, {del, a, b}} {
		writeJSONL(t, file, seq)
		src, err := NewJSONL(JSONLConfig{Path: file, BatchSize: 1 + len(seq)%2})
		if err != nil {
			t.Fatal(err)
		}
		runOnce(t, s, nil, src, false)
		checkStore(t, s, expected(seq), Chunker{Words: 20, Overlap: 5})
	}
}

// failingStore makes writes fail after n upserts (fault injection).
type failingStore struct {
	retrieval.Store
	n atomic.Int32
}

var errInjected = errors.New("injected store failure")

func (f *failingStore) Upsert(ctx context.Context, t retrieval.Ticket, c []retrieval.Chunk) error {
	if f.n.Add(-1) < 0 {
		return errInjected
	}
	return f.Store.Upsert(ctx, t, c)
}

func TestStoreFailureKeepsWatermark(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t.jsonl")
	rows := genTickets(3, 200, 60)
	writeJSONL(t, file, rows)
	src, err := NewJSONL(JSONLConfig{Path: file, BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewFileState(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, "", newEmbedder())
	defer s.Close()
	fs := &failingStore{Store: s}
	fs.n.Store(120)
	_, err = newTestIndexer(t, fs, newEmbedder(), st, false).Run(context.Background(), src)
	if !errors.Is(err, errInjected) {
		t.Fatalf("run with failing store: %v", err)
	}
	// The rerun picks up every row the failed run did not write.
	sum := runOnce(t, s, st, src, false)
	if sum.Embedded+sum.Unchanged != sum.Seen || sum.Embedded < 200-120 {
		t.Fatalf("rerun: %+v", sum)
	}
	checkStore(t, s, expected(rows), Chunker{Words: 20, Overlap: 5})
}

// The demo org's tickets index without a single failed row, from the file
// and from the bytes embedded in the binary.
func TestDemoTickets(t *testing.T) {
	file, err := NewJSONL(JSONLConfig{Path: "../testdata/tickets.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewFileState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := NewJSONLData("demo", testdata.Tickets, 50)
	for _, src := range []Source{file, data} {
		s := openStore(t, "", newEmbedder())
		defer s.Close()
		sum := runOnce(t, s, st, src, false)
		if sum.Failed != 0 || sum.Embedded == 0 || sum.Embedded != sum.Seen {
			t.Fatalf("%s: %+v", src.Name(), sum)
		}
		if sum := runOnce(t, s, st, src, false); sum.Seen != 0 {
			t.Fatalf("%s again: %+v", src.Name(), sum)
		}
	}
}

func TestJSONLOverlongLineAndDirectory(t *testing.T) {
	dir := t.TempDir()
	rows := genTickets(41, 30, 40)
	// A line longer than any valid ticket, then a CRLF line: the first is
	// reported with its line number, the reader finds the next line.
	huge := `{"id":"T-huge","body":"` + strings.Repeat("x", maxLineBytes) + `"}`
	crlf, err := json.Marshal(rows[9])
	if err != nil {
		t.Fatal(err)
	}
	writeJSONL(t, filepath.Join(dir, "a", "1.jsonl"), rows[:9], huge, string(crlf)+"\r")
	writeJSONL(t, filepath.Join(dir, "a", "2.ndjson"), rows[10:20])
	writeJSONL(t, filepath.Join(dir, "b.jsonl"), rows[20:])
	writeJSONL(t, filepath.Join(dir, "ignored.txt"), rows[:1])
	src, err := NewJSONL(JSONLConfig{Path: dir, BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, "", newEmbedder())
	defer s.Close()
	sum := runOnce(t, s, nil, src, false)
	if sum.Embedded != 30 || sum.Failed != 1 || sum.Failures[0].Ref != filepath.Join("a", "1.jsonl")+":10" || !strings.Contains(sum.Failures[0].Reason, "longer than") {
		t.Fatalf("%+v", sum)
	}
	checkStore(t, s, expected(rows), Chunker{Words: 20, Overlap: 5})
}
