package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestGrantsCommand: create, list and revoke through a real `serve --dev`
// (the command goes through the Go client); an expired grant is listed as
// expired, and a server refusal is reported with the problem's reason.
func TestGrantsCommand(t *testing.T) {
	data := t.TempDir()
	base := startServe(t, data)
	admin := mint(t, data, "operator", "acme", "--scope", "clearance:admin")
	if _, stderr, err := run(t, "", "relationships", "write", "--server", base, "--token", admin,
		"--data-dir", filepath.Join(t.TempDir(), "cli"), "../../testdata/org.fga.yaml"); err != nil {
		t.Fatalf("load org: %v\n%s", err, stderr)
	}
	anne := mint(t, data, "anne", "acme")
	g := func(args ...string) (string, error) {
		out, _, err := run(t, "", append(append([]string{"grants"}, args...), "--server", base, "--token", anne)...)
		return out, err
	}
	if out, err := g("create", "helper", "--projects", "acme-api", "--expires-in", "1h"); err != nil || !strings.Contains(out, "anne  helper  acme-api") {
		t.Fatalf("create: %v\n%s", err, out)
	}
	out, err := g("list")
	if err != nil {
		t.Fatal(err)
	}
	var helper, mailbot string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(l, "helper"):
			helper = l
		case strings.Contains(l, "mailbot"):
			mailbot = l
		}
	}
	if helper == "" || strings.Contains(helper, "expired") {
		t.Errorf("helper's grant: %q", helper)
	}
	if !strings.Contains(mailbot, "2025-01-01T00:00:00Z (expired)") {
		t.Errorf("mailbot's expired grant: %q\n%s", mailbot, out)
	}
	if out, err := g("revoke", "helper"); err != nil || !strings.Contains(out, "revoked:") || !strings.Contains(out, "acme-api") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if _, err := g("create", "helper", "--projects", "globex-portal"); err == nil || !strings.Contains(err.Error(), "projects") {
		t.Errorf("granting another tenant's project: %v", err)
	}
}
