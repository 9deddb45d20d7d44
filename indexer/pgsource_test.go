package indexer

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
)

func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestParseColumns(t *testing.T) {
	c, err := ParseColumns(" id=ticket_id, tenant=org ,deleted=is_deleted")
	if err != nil || c.ID != "ticket_id" || c.Tenant != "org" || c.Deleted != "is_deleted" || c.Body != "body" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{"id", "id=", "color=x"} {
		if _, err := ParseColumns(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A source table with its own column names: an integer id, a deleted flag.
const pgSchema = `CREATE TABLE app.issues (
	ticket_id   bigint PRIMARY KEY,
	org         text NOT NULL,
	proj        text,
	subject     text,
	description text,
	modified    timestamptz,
	is_deleted  boolean NOT NULL DEFAULT false)`

// pgTestColumns maps app.issues.
var pgTestColumns = Columns{ID: "ticket_id", Tenant: "org", Project: "proj", Title: "subject", Body: "description", UpdatedAt: "modified", Deleted: "is_deleted"}

func pgInsert(t testing.TB, pool *pgxpool.Pool, rows []Row) {
	t.Helper()
	for _, r := range rows {
		var id int64
		fmt.Sscanf(r.ID, "T-%d", &id)
		_, err := pool.Exec(context.Background(), `INSERT INTO app.issues VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (ticket_id) DO UPDATE SET org = $2, proj = $3, subject = $4, description = $5, modified = $6, is_deleted = $7`,
			id, r.Tenant, r.Project, r.Title, r.Body, r.UpdatedAt, r.Deleted)
		if err != nil {
			t.Fatal(err)
		}
	}
}

// pgRows renames generated tickets to the integer ids the table holds.
func pgRows(rows []Row) []Row {
	out := make([]Row, len(rows))
	for i, r := range rows {
		var id int64
		fmt.Sscanf(r.ID, "T-%d", &id)
		r.ID = fmt.Sprint(id)
		out[i] = r
	}
	return out
}

func TestPGSourceIncrementalAndFull(t *testing.T) {
	url := testenv.DatabaseURL(t)
	ctx := context.Background()
	pool := newPool(t, url)
	if _, err := pool.Exec(ctx, "CREATE SCHEMA app; "+pgSchema); err != nil {
		t.Fatal(err)
	}
	gen := genTickets(11, 230, 80)
	pgInsert(t, pool, gen)
	// One row that cannot be indexed: reported by id, the run goes on.
	if _, err := pool.Exec(ctx, `INSERT INTO app.issues VALUES (999999, 'acme', 'has space', 's', 'b', now(), false)`); err != nil {
		t.Fatal(err)
	}
	cols, err := ParseColumns("id=ticket_id,tenant=org,project=proj,title=subject,body=description,updated_at=modified,deleted=is_deleted")
	if err != nil || cols != pgTestColumns {
		t.Fatalf("%+v %v", cols, err)
	}
	src, err := NewPG(PGConfig{Pool: pool, Table: "app.issues", Columns: cols, PageSize: 40})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(src.Name(), "postgres@") || !strings.Contains(src.Name(), "app.issues") {
		t.Errorf("source name %q", src.Name())
	}
	st, err := NewPGState(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, filepath.Join(t.TempDir(), "index"), newEmbedder())
	defer s.Close()
	c := Chunker{Words: 20, Overlap: 5}

	sum := runOnce(t, s, st, src, false)
	if sum.Seen != 231 || sum.Embedded != 230 || sum.Failed != 1 || sum.Failures[0].Ref != "id=999999" || !strings.Contains(sum.Failures[0].Reason, "project") {
		t.Fatalf("first run: %+v", sum)
	}
	want := expected(pgRows(gen))
	checkStore(t, s, want, c)

	// Nothing changed: the keyset query returns no rows.
	if sum := runOnce(t, s, st, src, false); sum.Seen != 0 {
		t.Fatalf("idle run: %+v", sum)
	}

	// Changes stamp modified = later; a NULL-stamped row and a hard delete are
	// only found by a full sync.
	later := time.Now().UTC().Truncate(time.Millisecond).Add(time.Minute)
	edit, move, del := gen[5], gen[6], gen[7]
	edit.Body, edit.UpdatedAt = "new body", later
	move.Project, move.UpdatedAt = move.Project+"-x", later
	del.Deleted, del.UpdatedAt = true, later.Add(time.Second)
	pgInsert(t, pool, []Row{edit, move, del})
	if _, err := pool.Exec(ctx, `DELETE FROM app.issues WHERE ticket_id IN (8, 999999)`); err != nil {
		t.Fatal(err)
	}
	sum = runOnce(t, s, st, src, false)
	if sum.Seen != 3 || sum.Embedded != 1 || sum.Moved != 1 || sum.Deleted != 1 {
		t.Fatalf("incremental run: %+v", sum)
	}
	want = expected(pgRows(append(gen, edit, move, del)))
	checkStore(t, s, want, c)

	// With a lag, the rows changed within it are read again and skipped by hash.
	lagged, err := NewPG(PGConfig{Pool: pool, Table: "app.issues", Columns: cols, PageSize: 40, Lag: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if sum := runOnce(t, s, st, lagged, false); sum.Seen != 3 || sum.Unchanged != 3 {
		t.Fatalf("lagged run: %+v", sum)
	}

	sum = runOnce(t, s, st, src, true)
	if sum.Deleted != 1 || sum.Embedded != 0 || sum.Seen != 229 {
		t.Fatalf("full sync: %+v", sum)
	}
	delete(want, "8")
	checkStore(t, s, want, c)
}

func TestPGSourceQuery(t *testing.T) {
	url := testenv.DatabaseURL(t)
	ctx := context.Background()
	pool := newPool(t, url)
	if _, err := pool.Exec(ctx, "CREATE SCHEMA app; "+pgSchema); err != nil {
		t.Fatal(err)
	}
	gen := genTickets(12, 50, 30)
	pgInsert(t, pool, gen)
	src, err := NewPG(PGConfig{Pool: pool, PageSize: 7, Query: `SELECT ticket_id AS id, org AS tenant, proj AS project,
		subject AS title, description AS body, modified AS updated_at FROM app.issues WHERE org = 'tenant1'`})
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, "", newEmbedder())
	defer s.Close()
	runOnce(t, s, nil, src, false)
	want := map[string]retrieval.Ticket{}
	for id, tk := range expected(pgRows(gen)) {
		if tk.Tenant == "tenant1" {
			want[id] = tk
		}
	}
	checkStore(t, s, want, Chunker{Words: 20, Overlap: 5})
}
