package tuplefile

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

func collect(t *testing.T, src string, f Format) ([]Entry, []*LineError) {
	t.Helper()
	var out []Entry
	var bad []*LineError
	for e, err := range Read(strings.NewReader(src), f) {
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("error without a line: %v", err)
			}
			if !errors.Is(err, clearance.ErrInvalid) {
				t.Errorf("line error %v is not ErrInvalid", err)
			}
			bad = append(bad, le)
			continue
		}
		out = append(out, e)
	}
	return out, bad
}

// TestFormatsCarryLines: the three formats give the same tuples, each with the
// line it is on, and a bad line is reported with its number while the rest is
// still read.
func TestFormatsCarryLines(t *testing.T) {
	want := []authz.Tuple{
		{User: "user:anne", Relation: "viewer", Object: "project:web"},
		{User: "delegation:anne~bot", Relation: "granted", Object: "project:web",
			Condition: &authz.Condition{Name: "not_expired", Context: map[string]any{"expires_at": "2027-01-01T00:00:00Z"}}},
	}
	cases := []struct {
		name  string
		f     Format
		src   string
		lines []int
		bad   int // line of the bad entry
	}{
		{"jsonl", JSONL, `{"user":"user:anne","relation":"viewer","object":"project:web"}

{"user":"delegation:anne~bot","relation":"granted","object":"project:web","condition":{"name":"not_expired","context":{"expires_at":"2027-01-01T00:00:00Z"}}}
{"user":"user:x","relaton":"viewer","object":"project:web"}
`, []int{1, 3}, 4},
		{"csv", CSV, `user,relation,object,condition,context
user:anne,viewer,project:web
# a comment
delegation:anne~bot,granted,project:web,not_expired,"{""expires_at"":""2027-01-01T00:00:00Z""}"
user:x,viewer
`, []int{2, 4}, 5},
		{"yaml", YAML, `name: x
model_file: model.fga
tuples:
  - {user: user:anne, relation: viewer, object: project:web}
  - user: delegation:anne~bot
    relation: granted
    object: project:web
    condition: {name: not_expired, context: {expires_at: 2027-01-01T00:00:00Z}}
  - {user: user:x, relaton: viewer, object: project:web}
tests:
  - name: t
    tuples:
      - {user: user:test, relation: viewer, object: project:web}
`, []int{4, 5}, 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, bad := collect(t, c.src, c.f)
			if len(got) != len(want) {
				t.Fatalf("got %d tuples %v, want %d", len(got), got, len(want))
			}
			for i, e := range got {
				if e.Line != c.lines[i] || e.Tuple.String() != want[i].String() {
					t.Errorf("entry %d: line %d %s, want line %d %s", i, e.Line, e.Tuple, c.lines[i], want[i])
				}
			}
			if c := got[1].Tuple.Condition; c == nil || c.Name != "not_expired" || c.Context["expires_at"] != "2027-01-01T00:00:00Z" {
				t.Errorf("condition: %+v", c)
			}
			if len(bad) != 1 || bad[0].Line != c.bad {
				t.Errorf("bad lines %v, want one at line %d", bad, c.bad)
			}
		})
	}
}

// TestDemoOrgFile: the demo org store file reads as the loader fgafile reads it.
func TestDemoOrgFile(t *testing.T) {
	f, err := os.Open("../../testdata/org.fga.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := NewValidator(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for e, err := range Read(f, Detect(f.Name(), nil)) {
		if err != nil {
			t.Fatal(err)
		}
		if err := v.CheckWrite(e.Tuple); err != nil {
			t.Errorf("line %d: %v", e.Line, err)
		}
		n++
	}
	if n < 20 {
		t.Errorf("read %d tuples from the demo org", n)
	}
}

// TestValidator: what the model refuses is refused before any write, and a
// delete ignores the condition.
func TestValidator(t *testing.T) {
	v, err := NewValidator(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []authz.Tuple{
		{User: "user:anne", Relation: "viewr", Object: "project:web"},
		{User: "agent:bot", Relation: "viewer", Object: "project:web"},
		{User: "user:anne", Relation: "active", Object: "delegation:anne~bot"},
		{User: "user:anne", Relation: "can_view", Object: "project:web"},
		{User: "delegation:a~b", Relation: "granted", Object: "project:web", Condition: &authz.Condition{Name: "not_expired", Context: map[string]any{"expires_at": "tomorrow"}}},
		{User: "user:anne", Relation: "viewer", Object: "project:web", Condition: &authz.Condition{}},
	} {
		if err := v.CheckWrite(bad); !errors.Is(err, clearance.ErrInvalid) {
			t.Errorf("CheckWrite(%s) = %v, want ErrInvalid", bad, err)
		}
	}
	withCond := authz.Tuple{User: "delegation:a~b", Relation: "granted", Object: "project:web", Condition: &authz.Condition{Name: "nope"}}
	if err := v.CheckDelete(withCond); err != nil {
		t.Errorf("CheckDelete ignores the condition: %v", err)
	}
}

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		name, head string
		want       Format
	}{
		{"org.fga.yaml", "", YAML},
		{"t.csv", "", CSV},
		{"t.jsonl", "", JSONL},
		{"-", ` {"user":"user:a"}`, JSONL},
		{"-", "user,relation,object\n", CSV},
		{"-", "tuples:\n  - {user: user:a, relation: viewer, object: project:x}\n", YAML},
	} {
		if got := Detect(c.name, []byte(c.head)); got != c.want {
			t.Errorf("Detect(%q, %q) = %s, want %s", c.name, c.head, got, c.want)
		}
	}
}
