package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/authz"
)

// TestKeysAndTokenCLI: keys create prints a key that authenticates, list never
// prints secrets, revoke ends it; token prints a dev token the data dir's key
// verifies.
func TestKeysAndTokenCLI(t *testing.T) {
	dir := t.TempDir()
	// A key's scope is never implied: without --scope nothing is created.
	if out, err := runCLI(t, "keys", "create", "--data-dir", dir, "--tenant", "acme", "--service-account", "acme-ingest"); err == nil || !strings.Contains(err.Error(), "scope") {
		t.Fatalf("create without --scope: %v %s", err, out)
	}
	out, err := runCLI(t, "keys", "create", "--data-dir", dir, "--tenant", "acme", "--service-account", "acme-ingest", "--name", "sync", "--scope", "tickets:read")
	if err != nil {
		t.Fatal(err, out)
	}
	var key string
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, auth.KeyPrefix) {
			key = f
		}
	}
	keys, err := keysFromFlags(context.Background(), dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := keys.Authenticate(context.Background(), key)
	if err != nil || p.Kind != authz.KindServiceAccount || p.ServiceAccount != "acme-ingest" {
		t.Fatalf("created key %q: %+v %v", key, p, err)
	}
	id := p.APIKeyID
	out, err = runCLI(t, "keys", "list", "--data-dir", dir)
	if err != nil || !strings.Contains(out, id) || strings.Contains(out, key[len(key)-20:]) || !strings.Contains(out, "operator") || p.KeyMinter != "" {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "keys", "revoke", "--data-dir", dir, "--tenant", "globex", id); err == nil {
		t.Fatalf("revoke in the wrong tenant: %s", out)
	}
	if out, err := runCLI(t, "keys", "revoke", "--data-dir", dir, "--tenant", "acme", id); err != nil {
		t.Fatal(err, out)
	}
	if _, err := keys.Authenticate(context.Background(), key); err == nil {
		t.Fatal("revoked key still authenticates")
	}

	out, err = runCLI(t, "token", "--data-dir", dir, "--sub", "anne", "--tenant", "acme", "--act", "copilot", "--scope", "tickets:read clearance:audit", "--projects", "acme-web,acme-api", "--ttl", "10m")
	if err != nil {
		t.Fatal(err, out)
	}
	dk, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := dk.PublicSet()
	v, err := auth.NewJWTVerifier(context.Background(), auth.JWTConfig{Issuer: auth.DevIssuer, Audiences: []string{defaultDevAudience}, Keys: set})
	if err != nil {
		t.Fatal(err)
	}
	p, exp, err := v.Verify(context.Background(), strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if p.Agent != "copilot" || p.User != "anne" || !p.HasScope("clearance:audit") || len(p.Narrowing.Projects) != 2 || time.Until(exp) > 10*time.Minute {
		t.Fatalf("token principal %+v exp %v", p, exp)
	}
	if _, err := runCLI(t, "token", "--data-dir", dir, "--sub", "anne"); err == nil {
		t.Fatal("token without --tenant")
	}
}
