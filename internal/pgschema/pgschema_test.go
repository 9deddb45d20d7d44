package pgschema

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/internal/testenv"
)

func connConfig(t *testing.T, url string) *pgx.ConnConfig {
	t.Helper()
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// versions lists the applied versions of a version table.
func versions(t *testing.T, conn *pgx.Conn, table string) []int64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT version_id FROM `+table+` WHERE is_applied ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	v, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func latest(t *testing.T, glob string) int64 {
	t.Helper()
	files, err := coreFS.ReadDir("core")
	if glob == "vector" {
		files, err = vectorFS.ReadDir("vector")
	}
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(files))
}

// TestConcurrentFirstStart: replicas applying both sets at the same instant on
// an empty database (no tables, no vector extension) all succeed, and each
// version is recorded exactly once.
func TestConcurrentFirstStart(t *testing.T) {
	ctx := context.Background()
	url := testenv.EmptyDatabaseURL(t)
	cc := connConfig(t, url)
	start := make(chan struct{})
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			<-start
			if err := Migrate(ctx, cc.Copy(), nil); err != nil {
				errs[i] = err
				return
			}
			errs[i] = MigrateVector(ctx, cc.Copy(), 8, nil)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, url)
	want := func(table string, n int64) {
		got := versions(t, conn, table)
		if len(got) != int(n)+1 || got[len(got)-1] != n {
			t.Errorf("%s holds %v, want 0..%d once each", table, got, n)
		}
	}
	want(CoreTable, latest(t, "core"))
	want(VectorTable, latest(t, "vector"))
}

// oldSchema is what builds before the versioned path created: API keys, audit
// and index state with CREATE TABLE IF NOT EXISTS, and the pgvector store's own
// two steps recorded in clearance_vector_migrations.
const oldSchema = `
CREATE TABLE clearance_api_keys (id text PRIMARY KEY, tenant text NOT NULL, service_account text NOT NULL,
	name text NOT NULL DEFAULT '', scopes text[] NOT NULL, salt bytea NOT NULL, hash bytea NOT NULL,
	created_at timestamptz NOT NULL, last_used_at timestamptz);
CREATE INDEX clearance_api_keys_tenant ON clearance_api_keys (tenant, created_at);
CREATE TABLE audit_records (seq bigint PRIMARY KEY, id text NOT NULL UNIQUE, time timestamptz NOT NULL,
	tenant text NOT NULL, principal text NOT NULL, agent text NOT NULL, tickets text[] NOT NULL, record text NOT NULL);
CREATE INDEX audit_records_tenant_id ON audit_records (tenant, id);
CREATE INDEX audit_records_time ON audit_records (time);
CREATE INDEX audit_records_tickets ON audit_records USING gin (tickets);
CREATE TABLE audit_head (one boolean PRIMARY KEY DEFAULT true CHECK (one), seq bigint NOT NULL, id text NOT NULL, hash text NOT NULL);
CREATE TABLE audit_checkpoints (id text PRIMARY KEY, checkpoint text NOT NULL);
CREATE TABLE clearance_index_state (source text PRIMARY KEY, watermark text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE clearance_vector_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE clearance_vector_meta (singleton bool PRIMARY KEY DEFAULT true CHECK (singleton), model text NOT NULL, dim int NOT NULL);
CREATE TABLE clearance_vector_tickets (id text COLLATE "C" PRIMARY KEY, tenant text NOT NULL, project text NOT NULL,
	title text NOT NULL, body text NOT NULL, updated_at timestamptz NOT NULL, content_hash text NOT NULL, chunks int NOT NULL);
CREATE TABLE clearance_vector_chunks (ticket_id text COLLATE "C" NOT NULL REFERENCES clearance_vector_tickets (id) ON DELETE CASCADE,
	ordinal int NOT NULL, tenant text NOT NULL, project text NOT NULL, text text NOT NULL, embedding vector(3) NOT NULL,
	PRIMARY KEY (ticket_id, ordinal));
CREATE INDEX clearance_vector_chunks_tenant_project ON clearance_vector_chunks (tenant, project);
CREATE INDEX clearance_vector_chunks_embedding_hnsw ON clearance_vector_chunks USING hnsw (embedding vector_ip_ops);
INSERT INTO clearance_vector_migrations (version) VALUES (1);
INSERT INTO clearance_vector_meta (model, dim) VALUES ('old', 3);
INSERT INTO clearance_index_state (source, watermark) VALUES ('jsonl:old', 'w1');
INSERT INTO clearance_vector_tickets VALUES ('T-1', 'acme', 'web', 't', 'b', now(), 'h', 1);
INSERT INTO clearance_vector_chunks VALUES ('T-1', 0, 'acme', 'web', 't b', '[1,0,0]');
`

// TestUpgradeFromUnversioned: a database an older build created (no version
// tables, pgvector at its step 1) is upgraded in place, its rows kept, and older
// builds of the pgvector store are fenced off by the version they do not know.
func TestUpgradeFromUnversioned(t *testing.T) {
	ctx := context.Background()
	url := testenv.EmptyDatabaseURL(t)
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, oldSchema); err != nil {
		t.Fatal(err)
	}
	cc := connConfig(t, url)
	if err := Migrate(ctx, cc, nil); err != nil {
		t.Fatalf("core on an old database: %v", err)
	}
	if err := MigrateVector(ctx, cc, 64, nil); err != nil {
		t.Fatalf("vector on an old database: %v", err)
	}
	var w string
	var chunks, idx int
	err := conn.QueryRow(ctx, `SELECT (SELECT watermark FROM clearance_index_state WHERE source = 'jsonl:old'),
		(SELECT count(*) FROM clearance_vector_chunks),
		(SELECT count(*) FROM pg_indexes WHERE indexname = 'clearance_vector_tickets_tenant_project_chunks')`).Scan(&w, &chunks, &idx)
	if err != nil || w != "w1" || chunks != 1 || idx != 1 {
		t.Fatalf("after the upgrade: watermark %q, chunks %d, step-4 index %d, %v", w, chunks, idx, err)
	}
	// Step 3: vectors are stored inline from now on.
	var storage string
	if err := conn.QueryRow(ctx, `SELECT attstorage::text FROM pg_attribute
		WHERE attrelid = 'clearance_vector_chunks'::regclass AND attname = 'embedding'`).Scan(&storage); err != nil || storage != "p" {
		t.Fatalf("embedding storage %q, %v", storage, err)
	}
	// The existing column keeps its dimension (the store's metadata check then
	// refuses another one).
	var typ string
	if err := conn.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = 'clearance_vector_chunks'::regclass AND attname = 'embedding'`).Scan(&typ); err != nil || typ != "vector(3)" {
		t.Fatalf("embedding column %q, %v", typ, err)
	}
	var fence int
	if err := conn.QueryRow(ctx, `SELECT max(version) FROM clearance_vector_migrations`).Scan(&fence); err != nil || fence != 3 {
		t.Fatalf("legacy fence: %d, %v", fence, err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO clearance_audit_sessions (id_hash, principal, csrf, expires_at) VALUES ('\x00', '{}', 'c', now())`); err != nil {
		t.Fatalf("new table missing after the upgrade: %v", err)
	}
	if got := versions(t, conn, CoreTable); got[len(got)-1] != latest(t, "core") {
		t.Fatalf("core versions %v", got)
	}
}

// TestNewerSchemaRefused: a database a newer build migrated is refused with a
// message that names both versions and what to do.
func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	url := testenv.EmptyDatabaseURL(t)
	cc := connConfig(t, url)
	if err := Migrate(ctx, cc, nil); err != nil {
		t.Fatal(err)
	}
	if err := MigrateVector(ctx, cc, 8, nil); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, url)
	for _, c := range []struct {
		table string
		n     int64
		run   func() error
	}{
		{CoreTable, latest(t, "core"), func() error { return Migrate(ctx, cc, nil) }},
		{VectorTable, latest(t, "vector"), func() error { return MigrateVector(ctx, cc, 8, nil) }},
	} {
		if _, err := conn.Exec(ctx, `INSERT INTO `+c.table+` (version_id, is_applied) VALUES ($1, true)`, c.n+1); err != nil {
			t.Fatal(err)
		}
		err := c.run()
		want := fmt.Sprintf("database schema version %d is newer than this binary's %d (table %s); upgrade clearance", c.n+1, c.n, c.table)
		if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v\nwant %q", c.table, err, want)
		}
	}
}

// TestLockedExcludes: functions run under Locked on one database never overlap
// (a Migrate contending for the same lock meanwhile still succeeds).
func TestLockedExcludes(t *testing.T) {
	ctx := context.Background()
	url := testenv.EmptyDatabaseURL(t)
	cc := connConfig(t, url)
	var (
		mu           sync.Mutex
		inside, most int
	)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			errs[i] = Locked(ctx, cc.Copy(), time.Second, func() error {
				mu.Lock()
				inside++
				most = max(most, inside)
				mu.Unlock()
				// Hold the lock across a migration attempt of another caller.
				time.Sleep(50 * time.Millisecond)
				mu.Lock()
				inside--
				mu.Unlock()
				return nil
			})
		})
	}
	wg.Go(func() {
		if err := Migrate(ctx, cc.Copy(), nil); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil || most != 1 {
		t.Fatalf("%d holders at once, %v", most, err)
	}
}

// TestLexicalPartitionsKeepRows: vector migration 6 moves the lexical table's
// rows into hash partitions of ticket_id, each with its GIN index, and the
// chunk table's triggers write the new table afterwards (insert, move,
// delete).
func TestLexicalPartitionsKeepRows(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	cc := connConfig(t, url)
	if err := migrateVector(ctx, cc.Copy(), 2, 5, nil); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, url)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	const tickets = 40
	for i := range tickets {
		id := fmt.Sprintf("T-%d", i)
		exec(`INSERT INTO clearance_vector_tickets (id, tenant, project, title, body, updated_at, content_hash, chunks, lex_len)
VALUES ($1, 'acme', 'p1', 't', 'b', now(), 'h', 2, 3)`, id)
		exec(`INSERT INTO clearance_vector_chunks (ticket_id, ordinal, tenant, project, text, embedding, lex_terms, lex_tfs, lex_len)
VALUES ($1, 0, 'acme', 'p1', 'x', '[1,0]', '{alpha,beta}', '{1,2}', 3), ($1, 1, 'acme', 'p1', 'y', '[0,1]', '{beta}', '{1}', 1)`, id)
	}
	type row struct {
		id      string
		ordinal int32
		project string
		doc     string
	}
	read := func() []row {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT ticket_id, ordinal, project, doc::text FROM clearance_vector_lexical ORDER BY 1, 2`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			return x, r.Scan(&x.id, &x.ordinal, &x.project, &x.doc)
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	before := read()
	if len(before) != 2*tickets {
		t.Fatalf("%d lexical rows before the migration, want %d", len(before), 2*tickets)
	}
	if err := MigrateVector(ctx, cc.Copy(), 2, nil); err != nil {
		t.Fatal(err)
	}
	if after := read(); !slices.Equal(after, before) {
		t.Fatalf("rows changed by the migration:\n got %v\nwant %v", after, before)
	}
	var parts, filled, validGIN int
	if err := conn.QueryRow(ctx, `
SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM clearance_vector_lexical WHERE tableoid = h.inhrelid)),
  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam
    WHERE i.indrelid = h.inhrelid AND am.amname = 'gin' AND i.indisvalid AND ic.relname = c.relname || '_doc'))
FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
WHERE h.inhparent = 'clearance_vector_lexical'::regclass`).Scan(&parts, &filled, &validGIN); err != nil {
		t.Fatal(err)
	}
	if parts != 4 || filled < 2 || validGIN != 4 {
		t.Fatalf("%d partitions, %d holding rows, %d with a valid GIN index on doc; want 4, at least 2, 4", parts, filled, validGIN)
	}
	// The triggers write the partitioned table: a new ticket, a move, a delete.
	exec(`INSERT INTO clearance_vector_tickets (id, tenant, project, title, body, updated_at, content_hash, chunks, lex_len)
VALUES ('T-new', 'acme', 'p1', 't', 'b', now(), 'h', 1, 1)`)
	exec(`INSERT INTO clearance_vector_chunks (ticket_id, ordinal, tenant, project, text, embedding, lex_terms, lex_tfs, lex_len)
VALUES ('T-new', 0, 'acme', 'p1', 'z', '[1,1]', '{gamma}', '{1}', 1)`)
	exec(`UPDATE clearance_vector_chunks SET project = 'p2' WHERE ticket_id = 'T-1'`)
	exec(`DELETE FROM clearance_vector_tickets WHERE id = 'T-2'`)
	var n, moved, gone, fresh int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE ticket_id = 'T-1' AND project = 'p2'),
  count(*) FILTER (WHERE ticket_id = 'T-2'), count(*) FILTER (WHERE ticket_id = 'T-new' AND doc ? 'gamma')
FROM clearance_vector_lexical`).Scan(&n, &moved, &gone, &fresh); err != nil {
		t.Fatal(err)
	}
	if n != 2*tickets-2+1 || moved != 2 || gone != 0 || fresh != 1 {
		t.Fatalf("after writes: %d rows, %d moved, %d of the deleted ticket, %d new; want %d, 2, 0, 1", n, moved, gone, fresh, 2*tickets-1)
	}
}
