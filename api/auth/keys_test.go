package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	server, cli := NewKeys(open(), nil), NewKeys(open(), nil)
	info, key, err := cli.Create(ctx, "acme", "acme-ingest", "sync", nil)
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
	if _, _, err := cli.Create(ctx, "globex", "globex-sync", "", []string{"clearance:index", "tickets:read"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ tenant, sa, name string }{{"ac me", "x", ""}, {"acme", "", ""}, {"acme", "x", "two\nlines"}} {
		_, _, err := cli.Create(ctx, bad.tenant, bad.sa, bad.name, nil)
		var fe *clearance.FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("create %+v: %v", bad, err)
		}
	}
	list, err := server.List(ctx, "acme")
	if err != nil || len(list) != 1 || list[0].ID != info.ID || list[0].LastUsedAt == nil {
		t.Fatalf("list acme: %+v %v", list, err)
	}
	if all, err := server.List(ctx, ""); err != nil || len(all) != 2 {
		t.Fatalf("list all: %+v %v", all, err)
	}
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
