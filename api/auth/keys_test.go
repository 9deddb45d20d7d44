package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// TestKeyBackends runs one suite on both backends.
func TestKeyBackends(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		testKeys(t, func() KeyBackend {
			b, err := OpenFileKeys(dir)
			if err != nil {
				t.Fatal(err)
			}
			return b
		})
		// Only salted hashes on disk, file private to the owner.
		b, err := os.ReadFile(filepath.Join(dir, keysFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), KeyPrefix) {
			t.Fatalf("key file holds a key: %s", b)
		}
		st, _ := os.Stat(filepath.Join(dir, keysFile))
		if st.Mode().Perm()&0o077 != 0 {
			t.Fatalf("key file mode %v", st.Mode())
		}
	})
	t.Run("postgres", func(t *testing.T) {
		url := testenv.DatabaseURL(t)
		// A table made before minters were recorded, with one key in it: the
		// schema is migrated in place and the old key is refused.
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Exec(context.Background(), `CREATE TABLE clearance_api_keys (
	id text PRIMARY KEY, tenant text NOT NULL, service_account text NOT NULL, name text NOT NULL DEFAULT '',
	scopes text[] NOT NULL, salt bytea NOT NULL, hash bytea NOT NULL, created_at timestamptz NOT NULL, last_used_at timestamptz)`)
		if err == nil {
			_, err = conn.Exec(context.Background(), `INSERT INTO clearance_api_keys VALUES ($1, 'acme', 'acme-ingest', 'old', '{tickets:read}', $2, $3, now(), NULL)`,
				legacyID, []byte(legacySalt), hashSecret([]byte(legacySalt), legacySecret))
		}
		conn.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b, err := OpenPGKeys(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := b.Get(context.Background(), legacyID); err != nil || r.CreatedBy != nil {
			t.Fatalf("legacy record %+v %v", r, err)
		}
		if _, err := NewKeys(b, nil).Authenticate(context.Background(), KeyPrefix+legacyID+"_"+legacySecret); !errors.Is(err, clearance.ErrUnauthenticated) {
			t.Fatalf("legacy key: %v", err)
		}
		if err := b.Delete(context.Background(), "acme", legacyID); err != nil {
			t.Fatal(err)
		}
		b.Close()
		testKeys(t, func() KeyBackend {
			b, err := OpenPGKeys(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		})
	})
}

// testKeys: open returns a new handle on the same storage each call (a server
// and a CLI process side by side).
func testKeys(t *testing.T, open func() KeyBackend) {
	ctx := context.Background()
	backend := open()
	server, cli := NewKeys(backend, nil), NewKeys(open(), nil)
	operator := Creator{Kind: CreatorOperator}
	info, key, err := cli.Create(ctx, "acme", "acme-ingest", "sync", nil, operator)
	if err != nil {
		t.Fatal(err)
	}
	if info.Scopes[0] != "tickets:read" || len(key) != len(KeyPrefix)+keyIDLen+1+keySecretLen {
		t.Fatalf("created %+v %d", info, len(key))
	}
	p, err := server.Authenticate(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	want := authz.Principal{Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "acme-ingest", APIKeyID: info.ID, AuthMethod: "api_key", Scopes: []string{"tickets:read"}}
	if p.String() != want.String() || p.APIKeyID != want.APIKeyID || p.AuthMethod != want.AuthMethod {
		t.Fatalf("principal %+v", p)
	}
	if p.KeyMinter != "" {
		t.Fatalf("an operator's key is bounded by %q", p.KeyMinter)
	}
	if _, _, err := cli.Create(ctx, "globex", "globex-sync", "", []string{"clearance:index", "tickets:read"}, operator); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ tenant, sa, name string }{{"ac me", "x", ""}, {"acme", "", ""}, {"acme", "x", "two\nlines"}} {
		_, _, err := cli.Create(ctx, bad.tenant, bad.sa, bad.name, nil, operator)
		var fe *clearance.FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("create %+v: %v", bad, err)
		}
	}
	list, err := server.List(ctx, "acme")
	if err != nil || len(list) != 1 || list[0].ID != info.ID || list[0].LastUsedAt == nil || list[0].CreatedBy == nil || *list[0].CreatedBy != operator {
		t.Fatalf("list acme: %+v %v", list, err)
	}
	if all, err := server.List(ctx, ""); err != nil || len(all) != 2 {
		t.Fatalf("list all: %+v %v", all, err)
	}
	testMinters(t, server, cli, backend)
	// Wrong secrets, malformed keys.
	for _, k := range []string{key[:len(key)-1] + "x", key[:len(key)-1], "clr_" + info.ID + "_" + strings.Repeat("0", keySecretLen), "clr_", key + "0"} {
		if _, err := server.Authenticate(ctx, k); !errors.Is(err, clearance.ErrUnauthenticated) {
			t.Fatalf("key %q: %v", k, err)
		}
	}
	// Revoke from the other handle: refused on the next request; not across tenants.
	if err := cli.Revoke(ctx, "globex", info.ID); !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("revoke across tenants: %v", err)
	}
	if err := cli.Revoke(ctx, "acme", info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Authenticate(ctx, key); !errors.Is(err, clearance.ErrUnauthenticated) {
		t.Fatalf("revoked key: %v", err)
	}
	if err := cli.Revoke(ctx, "acme", info.ID); !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
}

// A key stored before minters were recorded (see the postgres case, which
// makes one in an old-schema table before the backend migrates it).
const (
	legacyID     = "00000000000000aa"
	legacySalt   = "0123456789abcdef"
	legacySecret = "1111111111111111111111111111111111111111111111111111111111111111"
)

// testMinters: a tenant admin's key authenticates bounded by that admin; a key
// without a recorded (valid) minter is refused; a creator is required.
func testMinters(t *testing.T, server, cli *Keys, backend KeyBackend) {
	ctx := context.Background()
	bob := Creator{Kind: CreatorTenantAdmin, User: "bob"}
	info, key, err := cli.Create(ctx, "acme", "acme-ingest", "bob's", nil, bob)
	if err != nil {
		t.Fatal(err)
	}
	p, err := server.Authenticate(ctx, key)
	if err != nil || p.KeyMinter != "bob" || p.ServiceAccount != "acme-ingest" {
		t.Fatalf("tenant admin's key: %+v %v", p, err)
	}
	if m, ok := p.Minter(); !ok || m.Subject() != "user:bob" {
		t.Fatalf("minter %+v %v", m, ok)
	}
	if got := p.ViewChecks("ticket:DOCS-2"); len(got) != 2 || got[1].User != "user:bob" {
		t.Fatalf("view checks %+v", got)
	}
	if err := cli.Revoke(ctx, "acme", info.ID); err != nil {
		t.Fatal(err)
	}
	for _, by := range []Creator{{}, {Kind: CreatorTenantAdmin}, {Kind: "somebody", User: "bob"}} {
		if _, _, err := cli.Create(ctx, "acme", "acme-ingest", "", nil, by); err == nil {
			t.Fatalf("created with creator %+v", by)
		}
	}
	// Records without a valid creator: the legacy key (postgres), and ones
	// written directly to the backend (a hand-edited file, an old version).
	for i, by := range []*Creator{nil, {Kind: CreatorTenantAdmin}, {Kind: "root"}} {
		id := fmt.Sprintf("00000000000000b%d", i)
		r := KeyRecord{KeyInfo: KeyInfo{ID: id, Tenant: "acme", ServiceAccount: "acme-ingest", Scopes: []string{"tickets:read"}, CreatedBy: by},
			Salt: []byte(legacySalt), Hash: hashSecret([]byte(legacySalt), legacySecret)}
		if err := backend.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := server.Authenticate(ctx, KeyPrefix+id+"_"+legacySecret); !errors.Is(err, clearance.ErrUnauthenticated) {
			t.Fatalf("key with creator %+v: %v", by, err)
		}
		if err := backend.Delete(ctx, "acme", id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDevIssuer: the key is created once (0600) and reused; its tokens verify
// with its public set and carry the requested claims.
func TestDevIssuer(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := k1.JWKS()
	j2, _ := k2.JWKS()
	if string(j1) != string(j2) || strings.Contains(string(j1), `"d"`) {
		t.Fatalf("jwks differ or leak the private key: %s %s", j1, j2)
	}
	if st, _ := os.Stat(filepath.Join(dir, devKeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("dev key mode %v", st.Mode())
	}
	set, err := k1.PublicSet()
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewJWTVerifier(context.Background(), JWTConfig{Issuer: DevIssuer, Audiences: []string{"http://localhost:8080"}, Keys: set, AuthMethod: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := k2.Mint(TokenRequest{Subject: "anne", Tenant: "acme", Actor: "copilot", Scopes: []string{"tickets:read"}, Projects: []string{"acme-web"}, Audience: "http://localhost:8080", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p, exp, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != authz.KindAgent || p.User != "anne" || p.Agent != "copilot" || p.AuthMethod != "dev" || !p.HasScope("tickets:read") || p.Narrowing == nil || p.Narrowing.Projects[0] != "acme-web" {
		t.Fatalf("principal %+v", p)
	}
	if d := time.Until(exp); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("exp in %v", d)
	}
	// Another data dir's key is not trusted.
	other, _ := LoadOrCreateDevKey(t.TempDir())
	tok, _ = other.Mint(TokenRequest{Subject: "anne", Tenant: "acme", Audience: "http://localhost:8080", TTL: time.Hour})
	if _, _, err := v.Verify(context.Background(), tok); !errors.Is(err, clearance.ErrUnauthenticated) {
		t.Fatalf("foreign dev key: %v", err)
	}
	if _, err := k1.Mint(TokenRequest{Subject: "anne", Audience: "x", TTL: time.Hour}); err == nil {
		t.Fatal("token without tenant")
	}
}
