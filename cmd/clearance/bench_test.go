package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/internal/bench"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// TestBenchFlagValidation: bad combinations are refused before any work (the
// output directory is not even created).
func TestBenchFlagValidation(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--store", "pgvector"}, "--store pgvector needs --database-url"},
		{[]string{"--store", "qdrant"}, `--store "qdrant": want embedded or pgvector`},
		{[]string{"--engine", "postgres"}, "--engine postgres needs --database-url"},
		{[]string{"--engine", "spicedb"}, `--engine "spicedb": want embedded, sqlite, postgres, memory or the http(s) URL`},
		{[]string{"--engine", "http//fga:8080"}, `--engine "http//fga:8080": want the http(s) URL of an OpenFGA server`},
		{[]string{"--engine", "ftp://fga:8080"}, `--engine "ftp://fga:8080": want the http(s) URL`},
		{[]string{"--engine", "http://user:secret@[::1"}, "--engine: not a parsable URL"},
		{[]string{"--openfga-token", "t"}, "--openfga-token needs --engine <URL of an OpenFGA server>"},
		{[]string{"--database-url", "postgres://db/x"}, "--database-url is used only by --store pgvector, --engine postgres and --audit postgres"},
		{[]string{"--audit", "postgres"}, "--audit postgres needs --database-url"},
		{[]string{"--audit", "file"}, `--audit "file": want memory or postgres`},
		{[]string{"--store", "pgvector", "--database-url", "mysql://db/x"}, "--database-url: want postgres://"},
		{[]string{"--store", "pgvector", "--database-url", "postgres://db/x", "--pgvector-plan", "ivfflat"}, `--pgvector-plan "ivfflat": want auto, exact or hnsw`},
		{[]string{"--store", "pgvector", "--database-url", "postgres://db/x", "--pgvector-exact-workers", "-1"}, "--pgvector-exact-workers -1"},
		{[]string{"--scale", "ten"}, `--scale "ten"`},
		{[]string{"--samples", "0"}, "--samples 0: want 1..100"},
		{[]string{"--flow-runs", "-1"}, "--flow-runs -1: want at least 1"},
		{[]string{"--flow-only", "--flow-runs", "0"}, "--flow-runs 0: want at least 1"},
		{[]string{"--flow-only", "--quality"}, "--flow-only and --quality are two different runs"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			got, err := runCLI(t, append([]string{"bench", "--out", out}, c.args...)...)
			if err == nil {
				t.Fatalf("bench ran; want a validation error\n%s", got)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q\ndoes not contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats the URL's password", err)
			}
			if _, serr := os.Stat(out); !os.IsNotExist(serr) {
				t.Errorf("--out was created before the flags were checked: %v", serr)
			}
		})
	}
}

// TestBenchPGVector runs the smallest scale on the PostgreSQL-only stack (the
// real pgvector store, the embedded engine on postgres, the audit table), all in
// the run's own schema, and checks that the schema is gone afterwards while the
// vector extension stays.
func TestBenchPGVector(t *testing.T) {
	db := testenv.DatabaseURL(t)
	rep, out := runBenchCLI(t, "--store", "pgvector", "--engine", "postgres", "--audit", "postgres", "--database-url", db)
	if !strings.HasPrefix(rep.Store, "pgvector ") || rep.Engine != "embedded OpenFGA (postgres)" {
		t.Errorf("report names store %q, engine %q", rep.Store, rep.Engine)
	}
	if !strings.Contains(out, "chunks: ") {
		t.Errorf("no load progress in the output:\n%s", out)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var schemas, tables, vector int
	if err := conn.QueryRow(ctx, `SELECT
  (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'clearance\_bench\_%'),
  (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'),
  (SELECT count(*) FROM pg_extension WHERE extname = 'vector')`).Scan(&schemas, &tables, &vector); err != nil {
		t.Fatal(err)
	}
	if schemas != 0 || tables != 0 || vector != 1 {
		t.Errorf("after the run: %d bench schemas, %d tables in public, vector extension %d; want 0, 0, 1", schemas, tables, vector)
	}
}

// TestBenchOpenFGAServer runs the smallest scale against a real `openfga run`
// process that wants a preshared key, and checks the run's store is deleted.
func TestBenchOpenFGAServer(t *testing.T) {
	const key = "bench-test-key"
	srv := testenv.StartOpenFGA(t, key).URL
	rep, _ := runBenchCLI(t, "--engine", srv, "--openfga-token", key)
	if rep.Store != "embedded" || rep.Engine != "OpenFGA server at "+srv {
		t.Errorf("report names store %q, engine %q", rep.Store, rep.Engine)
	}
	if strings.Contains(rep.Command, key) {
		t.Errorf("report's command line holds the token: %s", rep.Command)
	}
	req, _ := http.NewRequest(http.MethodGet, srv+"/stores", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Stores []struct{ Name string } `json:"stores"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list.Stores) != 0 {
		t.Errorf("stores left on the server after the run: %+v", list.Stores)
	}
}

// runBenchCLI runs `clearance bench` at its smallest scale with args and asserts
// correctness only: no leaks and no errors anywhere, recall 1 for the exact
// strategies. Timings are never asserted.
func runBenchCLI(t *testing.T, args ...string) (*bench.Report, string) {
	t.Helper()
	dir := t.TempDir()
	start := time.Now()
	out, err := runCLI(t, append([]string{"bench", "--scale", "2k", "--queries", "1", "--naive-n", "20", "--samples", "2", "--out", dir}, args...)...)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	t.Logf("bench %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	exact := map[string]bool{"ListObjects over tickets": true, "clearance (cold cache)": true, "clearance (warm cache)": true, "clearance (warm decisions)": true}
	seen := map[string]int{}
	for _, r := range rep.Rows {
		if r.Leaks != 0 || r.Errors != 0 {
			t.Errorf("%s %s %s: %d leaks, %d errors", r.Strategy, r.Bucket, r.Kind, r.Leaks, r.Errors)
		}
		if r.Strategy == "clearance (warm decisions)" && r.EngineCalls != 0 {
			// The same query at the same revision: every decision from the
			// cache, on every engine (a remote one through its change log).
			t.Errorf("%s %s %s: %.1f engine calls per query, want 0", r.Strategy, r.Bucket, r.Kind, r.EngineCalls)
		}
		if r.Samples < r.Queries {
			t.Errorf("%s %s %s: %d latency samples for %d queries", r.Strategy, r.Bucket, r.Kind, r.Samples, r.Queries)
		}
		if exact[r.Strategy] {
			seen[r.Strategy] += r.Queries
			if r.Recall != 1 {
				t.Errorf("%s %s %s: recall %.3f, want 1", r.Strategy, r.Bucket, r.Kind, r.Recall)
			}
		}
	}
	for s := range exact {
		if seen[s] == 0 {
			t.Errorf("no queries of %q in the report", s)
		}
	}
	return &rep, out
}
