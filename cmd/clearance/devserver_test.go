package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/client"
)

// TestDevTokenAudience: `serve --dev` on a port other than 8080 records its
// URL in the data dir and `clearance token` mints for it, so the token works
// without --audience; a token for another audience is refused with a 401
// whose detail says why (dev mode only).
func TestDevTokenAudience(t *testing.T) {
	data := t.TempDir()
	base := startServe(t, data)
	rec, err := os.ReadFile(filepath.Join(data, devServerFile))
	if err != nil || !strings.Contains(string(rec), base) {
		t.Fatalf("dev server file: %s %v", rec, err)
	}
	ctx := context.Background()
	c, err := client.New(client.Config{Server: base, Credential: mint(t, data, "anne", "acme")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Search(ctx, client.SearchRequest{Query: "login"}); err != nil {
		t.Fatalf("token with the default audience: %v", err)
	}

	other, _ := client.New(client.Config{Server: base, Credential: mint(t, data, "anne", "acme", "--audience", "http://127.0.0.1:1")})
	_, err = other.Search(ctx, client.SearchRequest{Query: "login"})
	var apiErr *client.Error
	if !errors.Is(err, clearance.ErrUnauthenticated) || !errors.As(err, &apiErr) {
		t.Fatalf("wrong audience: %v, want a 401", err)
	}
	if d := apiErr.Problem.Detail; !strings.HasPrefix(d, "dev mode: ") || !strings.Contains(d, "audience") || !strings.Contains(d, "127.0.0.1:1") {
		t.Errorf("401 detail %q does not say why", d)
	}
}
