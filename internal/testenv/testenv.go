// Package testenv gives tests the real backends that `make test` starts: a fresh
// PostgreSQL database (with pgvector) per test and the OpenFGA server binary.
//
// Outside `make test` the variables are missing and such tests are skipped with a
// message saying how to run them; with CI=true a missing backend fails the test, so CI
// can never pass by skipping.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// missing skips the test, or fails it under CI.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI (run the tests with `make test`)", what)
	}
	t.Skipf("%s not set: run `make test` to start the test servers", what)
}

// DatabaseURL creates an empty database with the vector extension on the server
// named by DATABASE_URL, drops it when the test ends, and returns its URL.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	return newDatabase(t, true)
}

// EmptyDatabaseURL is DatabaseURL without the vector extension: a database as
// an operator hands it over, for tests of what clearance creates itself.
func EmptyDatabaseURL(t testing.TB) string {
	t.Helper()
	return newDatabase(t, false)
}

func newDatabase(t testing.TB, vector bool) string {
	t.Helper()
	base := os.Getenv("DATABASE_URL")
	if base == "" {
		missing(t, "DATABASE_URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to test postgres: %v", err)
	}
	defer admin.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	dbURL := u.String()
	if vector {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatalf("connect to test database: %v", err)
		}
		_, err = conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector")
		conn.Close(ctx)
		if err != nil {
			t.Fatalf("create extension vector: %v", err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return dbURL
}

// OpenFGABinary returns the path of the OpenFGA server binary (OPENFGA_BIN, or
// `openfga` on PATH).
func OpenFGABinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("OPENFGA_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("openfga"); err == nil {
		return p
	}
	missing(t, "OPENFGA_BIN")
	return ""
}

// QdrantURL returns QDRANT_URL or skips: there is no Qdrant server on these
// machines, so its tests run only where one is provided (also in CI).
func QdrantURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("QDRANT_URL")
	if u == "" {
		t.Skip("QDRANT_URL not set: the Qdrant adapter's tests need a running Qdrant server (e.g. QDRANT_URL=localhost:6334)")
	}
	return u
}
