package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	sqlitedriver "modernc.org/sqlite"
)

func cachingDB(t *testing.T, size int) *sql.DB {
	t.Helper()
	return cachingDBBytes(t, size, 0)
}

func cachingDBBytes(t *testing.T, size, maxBytes int) *sql.DB {
	t.Helper()
	db := sql.OpenDB(&stmtCachingConnector{dsn: sqliteDSN(filepath.Join(t.TempDir(), "t.db")), drv: &sqlitedriver.Driver{}, size: size, maxBytes: maxBytes})
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1) // every query on the same connection and cache
	if _, err := db.Exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := db.Exec("INSERT INTO kv VALUES (?, ?)", i, fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func values(t *testing.T, rows *sql.Rows) []string {
	t.Helper()
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStmtCacheReuseIsInvisible: a cached statement gives each execution its own
// bindings, also when the same query is still open on the connection (inside a
// transaction) and after eviction.
func TestStmtCacheReuseIsInvisible(t *testing.T) {
	db := cachingDB(t, 2)
	const q = "SELECT v FROM kv WHERE k >= ? AND k < ? ORDER BY k"
	for i := range 5 {
		rows, err := db.Query(q, i, i+2)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprint(values(t, rows)), fmt.Sprintf("[v%d v%d]", i, i+1); got != want {
			t.Fatalf("run %d: %s, want %s", i, got, want)
		}
	}
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	outer, err := tx.Query(q, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !outer.Next() {
		t.Fatal("no first row")
	}
	// Same text while outer's statement is mid-iteration.
	inner, err := tx.Query(q, 7, 9)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(values(t, inner)); got != "[v7 v8]" {
		t.Fatalf("inner query: %s", got)
	}
	var first string
	if err := outer.Scan(&first); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(append([]string{first}, values(t, outer)...)); got != "[v0 v1 v2]" {
		t.Fatalf("outer query after inner: %s", got)
	}
	// More shapes than the cache holds: evicted statements are re-prepared.
	for i := range 6 {
		rows, err := tx.Query(fmt.Sprintf("SELECT v FROM kv WHERE k = ? + %d", i), 1)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fmt.Sprint(values(t, rows)), fmt.Sprintf("[v%d]", i+1); got != want {
			t.Fatalf("shape %d: %s, want %s", i, got, want)
		}
	}
}

// TestPartialIndexesDropped: after open the file has no index whose condition
// makes sqlite re-prepare statements.
func TestPartialIndexesDropped(t *testing.T) {
	e, err := New(context.Background(), Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	db, err := sql.Open("sqlite", sqliteDSN(e.SQLitePath()))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'idx_tuple_partial_%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d partial tuple indexes remain", n)
	}
}

// TestStmtCacheExecs: writes run on cached statements with each execution's
// own bindings; a script of several statements runs them all; statements
// longer than the byte bound run unprepared, and the cached ones stay within
// it.
func TestStmtCacheExecs(t *testing.T) {
	const maxBytes = 200
	db := cachingDBBytes(t, 16, maxBytes)
	ctx := context.Background()
	const ins = "INSERT INTO kv VALUES (?, ?)"
	for i := 10; i < 20; i++ {
		if _, err := db.Exec(ins, i, fmt.Sprint("w", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec("INSERT INTO kv VALUES (20, 'x'); INSERT INTO kv VALUES (21, 'y')"); err != nil {
		t.Fatal(err)
	}
	long := "UPDATE kv SET v = ? WHERE k = ?" + strings.Repeat(" ", maxBytes)
	if _, err := db.Exec(long, "long", 3); err != nil {
		t.Fatal(err)
	}
	for i := range 8 { // distinct shapes, about 60 bytes each: more than the bound together
		if _, err := db.Exec(fmt.Sprintf("UPDATE kv SET v = v || ? WHERE k = %d + 0 * %d", 10+i, i), "!"); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.Query("SELECT v FROM kv WHERE k IN (3, 10, 17, 19, 20, 21) ORDER BY k")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(values(t, rows)); got != "[long w10! w17! w19 x y]" {
		t.Fatalf("rows after the writes: %s", got)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Raw(func(dc any) error {
		c := dc.(*stmtCachingConn)
		total := 0
		for q := range c.stmts {
			total += len(q)
			if q == long {
				t.Errorf("a statement longer than the bound was cached")
			}
		}
		if total != c.bytes || c.bytes > maxBytes {
			t.Errorf("cached text %d bytes (counted %d), bound %d", total, c.bytes, maxBytes)
		}
		if _, ok := c.stmts[fmt.Sprintf("UPDATE kv SET v = v || ? WHERE k = %d + 0 * %d", 17, 7)]; !ok {
			t.Errorf("the most recent statement is not cached")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
