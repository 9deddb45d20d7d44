package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/audittest"
	"github.com/clearance-dev/clearance/audit/filelog"
)

// TestAuditCommand runs tail, show and verify against a data dir, then edits a
// record on disk and expects verify to name it and exit with status 1.
func TestAuditCommand(t *testing.T) {
	dir := t.TempDir()
	l, err := filelog.Open(context.Background(), filelog.Config{Dir: filepath.Join(dir, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*audit.Record
	for i := range 4 {
		r := audittest.Rec("acme", fmt.Sprintf("user%d", i), "copilot", fmt.Sprintf("T-%d", i), "T-hidden")
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	l.Close()

	out, err := runCLI(t, "audit", "tail", "--data-dir", dir, "-n", "2")
	if err != nil {
		t.Fatalf("tail: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], recs[2].ID) || !strings.HasPrefix(lines[1], recs[3].ID) || !strings.Contains(lines[1], "withheld=1") {
		t.Fatalf("tail -n 2 printed:\n%s\nwant the last two records, oldest first", out)
	}
	out, err = runCLI(t, "audit", "show", recs[1].ID, "--data-dir", dir)
	if err != nil || !strings.Contains(out, `"denied_by_check"`) || !strings.Contains(out, recs[1].Hash) {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "audit", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--data-dir", dir); err == nil {
		t.Fatalf("show of a missing id succeeded:\n%s", out)
	}
	out, err = runCLI(t, "audit", "verify", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "intact") || !strings.Contains(out, recs[3].Hash) {
		t.Fatalf("verify: %v\n%s", err, out)
	}

	seg := filepath.Join(dir, "audit", "segments", "000001.log")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(b, []byte(`"user":"user2"`), []byte(`"user":"mallory"`), 1)
	if err := os.WriteFile(seg, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "audit", "verify", "--data-dir", dir)
	var exit exitError
	if !errors.As(err, &exit) || exit.code != 1 || !strings.Contains(out, "edited at position 2 (id "+recs[2].ID+")") {
		t.Fatalf("verify after an edit: %v\n%s", err, out)
	}
}
