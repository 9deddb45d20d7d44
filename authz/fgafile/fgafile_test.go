package fgafile_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/fgafile"
)

func TestLoadDemoOrg(t *testing.T) {
	f, err := fgafile.Load("../../testdata/org.fga.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if f.Model != authz.ModelDSL {
		t.Error("model_file of the demo org is not authz/model.fga")
	}
	if n := f.Assertions(); n < 40 {
		t.Errorf("demo org has %d assertions, want at least 40", n)
	}
	var cond int
	for _, tp := range f.Tuples {
		if tp.Condition != nil {
			cond++
			if _, ok := tp.Condition.Context["expires_at"].(string); !ok {
				t.Errorf("%s: expires_at is %T, want an RFC 3339 string", tp, tp.Condition.Context["expires_at"])
			}
		}
	}
	if cond == 0 {
		t.Error("no conditioned tuple loaded")
	}
	t.Logf("%d tuples, %d tests, %d assertions", len(f.Tuples), len(f.Tests), f.Assertions())
}

var update = flag.Bool("update", false, "rewrite the ticket#project block of testdata/org.fga.yaml from testdata/tickets.jsonl")

const orgPath = "../../testdata/org.fga.yaml"

// TestOrgCoversTickets: every ticket of the demo corpus has exactly its
// ticket#project tuple, in a project of its own tenant, and the org has no ticket
// the corpus lacks. With -update the block between the BEGIN/END TICKETS markers is
// regenerated from tickets.jsonl.
func TestOrgCoversTickets(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/tickets.jsonl")
	if err != nil {
		t.Skipf("no demo corpus yet: %v", err)
	}
	type ticket struct{ ID, Tenant, Project string }
	var tickets []ticket
	for i, line := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var tk ticket
		if err := json.Unmarshal(line, &tk); err != nil || tk.ID == "" || tk.Project == "" {
			t.Fatalf("tickets.jsonl line %d: %v (%+v)", i+1, err, tk)
		}
		tickets = append(tickets, tk)
	}
	if *update {
		org, err := os.ReadFile(orgPath)
		if err != nil {
			t.Fatal(err)
		}
		begin := []byte("  # BEGIN TICKETS (generated from testdata/tickets.jsonl)\n")
		end := []byte("  # END TICKETS\n")
		i, j := bytes.Index(org, begin), bytes.Index(org, end)
		if i < 0 || j < i {
			t.Fatal("markers not found in org.fga.yaml")
		}
		var b bytes.Buffer
		b.Write(org[:i+len(begin)])
		for _, tk := range tickets {
			fmt.Fprintf(&b, "  - {user: project:%s, relation: project, object: ticket:%s}\n", tk.Project, tk.ID)
		}
		b.Write(org[j:])
		if err := os.WriteFile(orgPath, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := fgafile.Load(orgPath)
	if err != nil {
		t.Fatal(err)
	}
	projectOf := map[string]string{}
	tenantOf := map[string]string{}
	for _, tp := range f.Tuples {
		switch {
		case tp.Relation == "project" && strings.HasPrefix(tp.Object, "ticket:"):
			id := strings.TrimPrefix(tp.Object, "ticket:")
			if prev, ok := projectOf[id]; ok {
				t.Errorf("ticket %s is in %s and %s", id, prev, tp.User)
			}
			projectOf[id] = strings.TrimPrefix(tp.User, "project:")
		case tp.Relation == "tenant" && strings.HasPrefix(tp.Object, "project:"):
			tenantOf[strings.TrimPrefix(tp.Object, "project:")] = strings.TrimPrefix(tp.User, "tenant:")
		}
	}
	seen := map[string]bool{}
	for _, tk := range tickets {
		seen[tk.ID] = true
		switch p, ok := projectOf[tk.ID]; {
		case !ok:
			t.Errorf("ticket %s (%s) has no ticket#project tuple in org.fga.yaml (run go test ./authz/fgafile -run TestOrgCoversTickets -update)", tk.ID, tk.Project)
		case p != tk.Project:
			t.Errorf("ticket %s: org says project %s, corpus says %s", tk.ID, p, tk.Project)
		}
		if tenantOf[tk.Project] != tk.Tenant {
			t.Errorf("ticket %s: project %s belongs to tenant %q, corpus says %q", tk.ID, tk.Project, tenantOf[tk.Project], tk.Tenant)
		}
	}
	for id := range projectOf {
		if !seen[id] {
			t.Errorf("org.fga.yaml has ticket %s that tickets.jsonl lacks", id)
		}
	}
}

func TestParseMatchesLoad(t *testing.T) {
	raw, err := os.ReadFile(orgPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fgafile.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	l, err := fgafile.Load(orgPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Tuples) != len(l.Tuples) || len(p.Tests) != len(l.Tests) || p.Model != "" {
		t.Errorf("Parse: %d tuples %d tests model %q; Load: %d tuples %d tests", len(p.Tuples), len(p.Tests), p.Model, len(l.Tuples), len(l.Tests))
	}
	for _, bad := range []string{
		"tuples: [{user: user:a, relation: viewer}]",
		"tests: [{name: x, check: [{user: user:a, assertions: {can_view: true}}]}]",
		"tests: [{name: x, list_objects: [{user: user:a, assertions: {can_view: []}}]}]",
		"tuples: {",
	} {
		if _, err := fgafile.Parse([]byte(bad)); !errors.Is(err, clearance.ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
