package pgvector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/internal/pgschema"
	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// TestLexicalBackfill: chunks without lexical columns (rows from before the
// lexical migration, or written by an older binary during a rolling upgrade,
// whose ticket rows keep a stale total length) are tokenized by the next
// lexical search before it answers, across several backfill batches, and the
// answer equals the one over rows written with their tokens.
func TestLexicalBackfill(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	s, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: "lex-backfill", Dim: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	words := []string{"login", "timeout", "replica", "lag", "payment", "refund", "crash"}
	n := 2*fillBatch + 50
	for i := range n {
		id := fmt.Sprintf("T-%04d", i)
		tk := retrieval.Ticket{ID: id, Tenant: "acme", Project: fmt.Sprintf("p%d", i%3), Title: words[i%len(words)] + " issue"}
		var chunks []retrieval.Chunk
		for o := range 1 + i%2 {
			text := words[(i+o)%len(words)] + " " + words[(i*3+o)%len(words)]
			if i == 77 {
				text += " failed with ERR_CONN_RESET"
			}
			chunks = append(chunks, retrieval.Chunk{Ordinal: o, Text: text, Vector: []float32{1, 0, 0, 0}})
		}
		if err := s.Upsert(ctx, tk, chunks); err != nil {
			t.Fatal(err)
		}
	}
	type query struct {
		q string
		f retrieval.Filter
	}
	queries := []query{
		{"login timeout", retrieval.Filter{Tenant: "acme", AllProjects: true}},
		{"err_conn_reset crash", retrieval.Filter{Tenant: "acme", Projects: []string{"p1"}, Tickets: []string{"T-0077"}}},
		{"refund lag", retrieval.Filter{Tenant: "acme", Projects: []string{"p0", "p2"}}},
	}
	search := func() [][]retrieval.Hit {
		var out [][]retrieval.Hit
		for _, q := range queries {
			res, err := s.SearchLexical(ctx, retrieval.LexicalRequest{Terms: lexical.Terms(q.q), Filter: q.f, K: 20})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Hits) == 0 {
				t.Fatalf("%q: no hits", q.q)
			}
			out = append(out, res.Hits)
		}
		return out
	}
	want := search()

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `
UPDATE clearance_vector_chunks SET lex_terms = NULL, lex_tfs = NULL, lex_len = NULL;
UPDATE clearance_vector_tickets SET lex_len = NULL WHERE id < 'T-0200';
UPDATE clearance_vector_tickets SET lex_len = 999 WHERE id >= 'T-0200'`); err != nil {
		t.Fatal(err)
	}
	got := search()
	for i := range queries {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("%q after backfill:\n got %v\nwant %v", queries[i].q, got[i], want[i])
		}
	}
	var missing, stale int
	if err := conn.QueryRow(ctx, `SELECT
  (SELECT count(*) FROM clearance_vector_chunks WHERE lex_len IS NULL OR lex_terms IS NULL OR lex_tfs IS NULL),
  (SELECT count(*) FROM clearance_vector_tickets t WHERE lex_len IS DISTINCT FROM
     (SELECT sum(lex_len) FROM clearance_vector_chunks c WHERE c.ticket_id = t.id))`).Scan(&missing, &stale); err != nil {
		t.Fatal(err)
	}
	if missing != 0 || stale != 0 {
		t.Fatalf("after backfill: %d chunks without tokens, %d tickets with a wrong total length", missing, stale)
	}
}

// lexFixture writes tickets with varied words, one with an error code, into a
// fresh store and returns it with a connection of its own.
func lexFixture(t *testing.T, model string) (*Store, *pgx.Conn, string) {
	t.Helper()
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	s, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: model, Dim: 4}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	words := []string{"login", "timeout", "replica", "lag", "payment", "refund", "crash", "ipad", "layout"}
	for i := range 120 {
		id := fmt.Sprintf("L-%03d", i)
		tk := retrieval.Ticket{ID: id, Tenant: "acme", Project: fmt.Sprintf("p%d", i%4), Title: words[i%len(words)] + " " + words[(i/3)%len(words)]}
		var chunks []retrieval.Chunk
		for o := range 1 + i%3 {
			text := strings.Repeat(words[(i+o)%len(words)]+" ", 1+o) + words[(i*5+o)%len(words)]
			if i%17 == 0 {
				text += " ERR_CONN_RESET on 1.22.1"
			}
			chunks = append(chunks, retrieval.Chunk{Ordinal: o, Text: text, Vector: []float32{1, 0, 0, 0}})
		}
		if err := s.Upsert(ctx, tk, chunks); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return s, conn, url
}

var lexQueries = []struct {
	q string
	f retrieval.Filter
}{
	{"login timeout", retrieval.Filter{Tenant: "acme", AllProjects: true}},
	{"L-017 err_conn_reset", retrieval.Filter{Tenant: "acme", Projects: []string{"p1"}, Tickets: []string{"L-034", "L-017"}}},
	{"refund lag 1.22.1 zebra", retrieval.Filter{Tenant: "acme", Projects: []string{"p0", "p2"}}},
	{"ipad layout crash", retrieval.Filter{Tenant: "acme", Tickets: []string{"L-007", "L-008"}}},
}

func lexSearchAll(t *testing.T, s *Store, k, offset int) [][]retrieval.Hit {
	t.Helper()
	var out [][]retrieval.Hit
	for _, q := range lexQueries {
		res, err := s.SearchLexical(context.Background(), retrieval.LexicalRequest{Terms: lexical.Terms(q.q), Filter: q.f, K: k, Offset: offset})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Exact {
			t.Fatalf("%q: not exact", q.q)
		}
		out = append(out, res.Hits)
	}
	return out
}

// TestLexicalGoIDFs: the second scoring (IDFs from Go, taken when
// PostgreSQL's ln disagrees with Go's in the last bit) ranks and scores
// exactly as the one-statement search, on every page.
func TestLexicalGoIDFs(t *testing.T) {
	s, _, _ := lexFixture(t, "lex-goidf")
	for _, page := range [][2]int{{10, 0}, {7, 7}, {50, 3}} {
		want := lexSearchAll(t, s, page[0], page[1])
		s.goIDFs = true
		got := lexSearchAll(t, s, page[0], page[1])
		s.goIDFs = false
		for i := range want {
			if len(want[i]) == 0 && page[1] == 0 {
				t.Fatalf("%q: no hits", lexQueries[i].q)
			}
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("%q k=%d offset=%d with Go's IDFs:\n got %v\nwant %v", lexQueries[i].q, page[0], page[1], got[i], want[i])
			}
		}
	}
}

// TestLexicalTable: the narrow lexical table holds exactly the tokenized
// chunks after upserts, replacements, moves, deletes (cascaded from the
// ticket row) and a backfill; and the migration that created it copies the
// chunks already there (applied again to a database it left empty).
func TestLexicalTable(t *testing.T) {
	ctx := context.Background()
	s, conn, url := lexFixture(t, "lex-table")
	inStep := func(when string) {
		t.Helper()
		var bad, n int
		if err := conn.QueryRow(ctx, `SELECT
  (SELECT count(*) FROM clearance_vector_chunks c FULL JOIN clearance_vector_lexical l USING (ticket_id, ordinal)
   WHERE c.lex_len IS NOT NULL AND (l.ticket_id IS NULL OR c.tenant <> l.tenant OR c.project <> l.project
     OR clearance_lex_doc(c.lex_terms, c.lex_tfs) <> l.doc OR c.lex_len <> l.len)
   OR c.ticket_id IS NULL OR (c.lex_len IS NULL AND l.ticket_id IS NOT NULL)),
  (SELECT count(*) FROM clearance_vector_lexical)`).Scan(&bad, &n); err != nil {
			t.Fatal(err)
		}
		if bad != 0 || n == 0 {
			t.Fatalf("%s: %d rows of the lexical table out of step (%d rows)", when, bad, n)
		}
	}
	inStep("after upserts")
	vec := []float32{0, 1, 0, 0}
	if err := s.Upsert(ctx, retrieval.Ticket{ID: "L-005", Tenant: "acme", Project: "p3", Title: "quokka"},
		[]retrieval.Chunk{{Ordinal: 0, Text: "wombat", Vector: vec}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Move(ctx, "L-006", "p9"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"L-010", "L-011"} {
		if err := s.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	inStep("after a replace, a move and deletes")
	want := lexSearchAll(t, s, 20, 0)

	if _, err := conn.Exec(ctx, `UPDATE clearance_vector_chunks SET lex_terms = NULL, lex_tfs = NULL, lex_len = NULL WHERE ticket_id < 'L-050'`); err != nil {
		t.Fatal(err)
	}
	if got := lexSearchAll(t, s, 20, 0); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("after the backfill:\n got %v\nwant %v", got, want)
	}
	inStep("after the backfill")

	// The database as the migration before the table left it: no rows, no
	// triggers, version 4 (migrations 5 and 6 run again on the rows).
	if _, err := conn.Exec(ctx, `
DROP TRIGGER clearance_vector_lexical_insert ON clearance_vector_chunks;
DROP TRIGGER clearance_vector_lexical_delete ON clearance_vector_chunks;
DROP TRIGGER clearance_vector_lexical_update ON clearance_vector_chunks;
DROP TABLE clearance_vector_lexical;
DELETE FROM `+pgschema.VectorTable+` WHERE version_id >= 5`); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: "lex-table", Dim: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	inStep("after the migration")
	if got := lexSearchAll(t, s2, 20, 0); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("after the migration:\n got %v\nwant %v", got, want)
	}
}

// TestLexicalLn: the schema's clearance_ln equals lexical.Ln to the bit over
// the IDF arguments of many corpus sizes (PostgreSQL's ln does not, for
// about 7% of them), so the one-statement search needs no second scoring.
func TestLexicalLn(t *testing.T) {
	_, conn, _ := lexFixture(t, "lex-ln")
	ctx := context.Background()
	var xs []float64
	for _, n := range []int{1, 2, 7, 333, 2500, 25000, 100000, 1_000_000} {
		for df := 1; df <= n; df += 1 + df/500 {
			xs = append(xs, 1+(float64(n)-float64(df)+0.5)/(float64(df)+0.5))
		}
	}
	xs = append(xs, 1, 2, 1.5, 0x1p-1022, 1e300, 0.3, 3.7e-5)
	rows, err := conn.Query(ctx, `SELECT clearance_ln(x), ln(x) FROM unnest($1::float8[]) x`, xs)
	if err != nil {
		t.Fatal(err)
	}
	i, lnDiffers := 0, 0
	for rows.Next() {
		var got, pgln float64
		if err := rows.Scan(&got, &pgln); err != nil {
			t.Fatal(err)
		}
		if want := lexical.Ln(xs[i]); got != want {
			t.Fatalf("clearance_ln(%v) = %v, lexical.Ln = %v", xs[i], got, want)
		}
		if pgln != got {
			lnDiffers++
		}
		i++
	}
	if rows.Err() != nil || i != len(xs) {
		t.Fatalf("%d of %d rows: %v", i, len(xs), rows.Err())
	}
	t.Logf("%d arguments; PostgreSQL's ln differs from lexical.Ln on %d", len(xs), lnDiffers)
}

// TestBulkLoadDefersTheLexicalIndex: BeginBulk drops the lexical table's GIN
// index too (adding each row's entries was most of what the lexical table
// cost a load), lexical searches answer the same without it, and EndBulk
// builds it; on a database a dead load left without it, the first lexical
// search of a store starts the build.
func TestBulkLoadDefersTheLexicalIndex(t *testing.T) {
	ctx := context.Background()
	s, conn, url := lexFixture(t, "lex-bulk")
	same := func(when string, got, want [][]retrieval.Hit) {
		t.Helper()
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("%s:\n got %v\nwant %v", when, got, want)
		}
	}
	wantLexicalStatus(t, conn, "before the load", IndexValid)
	want := lexSearchAll(t, s, 20, 0)
	if err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	wantLexicalStatus(t, conn, "during the load", IndexMissing)
	same("during the load", lexSearchAll(t, s, 20, 0), want)
	if _, err := s.EndBulk(ctx); err != nil {
		t.Fatal(err)
	}
	wantLexicalStatus(t, conn, "after the load", IndexValid)
	same("after the load", lexSearchAll(t, s, 20, 0), want)

	// A build killed in one partition's CREATE INDEX CONCURRENTLY leaves that
	// index INVALID (PostgreSQL then ignores it): a build drops and rebuilds it
	// alone.
	oid := func(i int) (o uint32) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT $1::regclass::oid`, lexicalIndex(i)).Scan(&o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	invalid, kept := oid(1), oid(2)
	if _, err := conn.Exec(ctx, `UPDATE pg_index SET indisvalid = false WHERE indexrelid = $1`, invalid); err != nil {
		t.Fatal(err)
	}
	wantLexicalStatus(t, conn, "with an invalid partition index", IndexInvalid)
	same("with an invalid partition index", lexSearchAll(t, s, 20, 0), want)
	if _, err := s.BuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	wantLexicalStatus(t, conn, "after BuildIndex", IndexValid)
	if oid(1) == invalid || oid(2) != kept {
		t.Fatalf("after BuildIndex: partition 1's index rebuilt %v, partition 2's kept %v; want both", oid(1) != invalid, oid(2) == kept)
	}

	// What a load killed before EndBulk leaves: every partition's index
	// missing.
	for i := range lexicalPartitions {
		if _, err := conn.Exec(ctx, `DROP INDEX `+lexicalIndex(i)); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: "lex-bulk", Dim: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	same("without the index", lexSearchAll(t, s2, 20, 0), want)
	poll(t, "the lexical index built after a search", func() bool {
		st, err := lexicalIndexStatus(ctx, conn)
		return err == nil && st == IndexValid
	})
	same("after the search built the index", lexSearchAll(t, s2, 20, 0), want)
}

// TestLexicalBuildOnABusyPool: the partitions' indexes are built by more than
// one session only when the pool has a connection to spare; with none (one
// connection, held by the bulk load) the end of the load builds them all on
// its own connection instead of waiting for one.
func TestLexicalBuildOnABusyPool(t *testing.T) {
	ctx := context.Background()
	_, conn, url := lexFixture(t, "lex-one-conn")
	s, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: "lex-one-conn", Dim: 4}, MaxConns: 1, BuildWorkers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	wantLexicalStatus(t, conn, "during the load", IndexMissing)
	done := make(chan error, 1)
	go func() { _, err := s.EndBulk(ctx); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("EndBulk waited a minute for a connection")
	}
	wantLexicalStatus(t, conn, "after the load", IndexValid)
}

// TestLexicalDuringAnotherReplicasBulkLoad: two stores on one database, as two
// replicas. While one bulk-loads (its lexical indexes dropped, its lock held),
// the other's lexical searches give the answers of the loader's, its writes
// land in the lexical table, and its index builds wait their turn
// (ErrBulkBusy); after the load both answer alike, the other's writes indexed.
func TestLexicalDuringAnotherReplicasBulkLoad(t *testing.T) {
	ctx := context.Background()
	loader, conn, url := lexFixture(t, "lex-two")
	other, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: "lex-two", Dim: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	same := func(when string) [][]retrieval.Hit {
		t.Helper()
		want, got := lexSearchAll(t, loader, 20, 0), lexSearchAll(t, other, 20, 0)
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("%s: the other replica's answers\n got %v\nwant %v", when, got, want)
		}
		return want
	}
	before := same("before the load")
	if err := loader.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	wantLexicalStatus(t, conn, "during the load", IndexMissing)
	if during := same("during the load"); !slices.EqualFunc(during, before, slices.Equal) {
		t.Fatalf("answers changed by dropping the indexes:\n got %v\nwant %v", during, before)
	}
	if _, err := other.BuildIndex(ctx); !errors.Is(err, ErrBulkBusy) {
		t.Fatalf("the other replica's BuildIndex during the load: %v, want ErrBulkBusy", err)
	}
	if err := other.Upsert(ctx, retrieval.Ticket{ID: "L-900", Tenant: "acme", Project: "p1", Title: "login"},
		[]retrieval.Chunk{{Ordinal: 0, Text: "timeout timeout timeout login", Vector: []float32{1, 0, 0, 0}}}); err != nil {
		t.Fatal(err)
	}
	same("after the other replica's write")
	if _, err := loader.EndBulk(ctx); err != nil {
		t.Fatal(err)
	}
	wantLexicalStatus(t, conn, "after the load", IndexValid)
	after := same("after the load")
	found := false
	for _, h := range after[0] { // "login timeout" over the whole tenant
		found = found || h.TicketID == "L-900"
	}
	if !found {
		t.Fatalf("the other replica's ticket written during the load is not found after it: %v", after[0])
	}
}

// TestLexicalIndexesDroppedByAnotherReplica: a store that has seen the lexical
// indexes valid looks again once that is lexRecheck old, so when another
// replica's bulk load dropped them and died, this replica's next lexical
// search starts the build (before, it trusted its first look for good and
// searched without the indexes until a `clearance index` run).
func TestLexicalIndexesDroppedByAnotherReplica(t *testing.T) {
	ctx := context.Background()
	loader, conn, url := lexFixture(t, "lex-recheck")
	other, err := Open(ctx, Config{DatabaseURL: url, Meta: retrieval.IndexMeta{Model: "lex-recheck", Dim: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.lexRecheck = 200 * time.Millisecond
	want := lexSearchAll(t, other, 20, 0)
	// The other replica's load, killed before EndBulk: its session (and
	// lock) gone, the indexes missing.
	if err := loader.BeginBulk(ctx); err != nil {
		t.Fatal(err)
	}
	if err := loader.Close(); err != nil {
		t.Fatal(err)
	}
	wantLexicalStatus(t, conn, "after the dead load", IndexMissing)
	time.Sleep(other.lexRecheck)
	if got := lexSearchAll(t, other, 20, 0); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("without the indexes:\n got %v\nwant %v", got, want)
	}
	poll(t, "the lexical indexes built after the other replica's search", func() bool {
		st, err := lexicalIndexStatus(ctx, conn)
		return err == nil && st == IndexValid
	})
}
