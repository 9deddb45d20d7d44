package indexer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance"
)

func TestParseFieldMap(t *testing.T) {
	m, err := ParseFieldMap(" title=summary, id=ticket_id ,-=priority,tenant=tenant")
	if err != nil {
		t.Fatal(err)
	}
	if m.String() != "-=priority,id=ticket_id,tenant=tenant,title=summary" {
		t.Errorf("canonical %q", m.String())
	}
	for _, bad := range []string{"titel=summary", "title", "title=", "title=a,title=b", "id=x,title=x", "-=x,id=x"} {
		if _, err := ParseFieldMap(bad); !errors.Is(err, clearance.ErrInvalid) {
			t.Errorf("ParseFieldMap(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if m, err := ParseFieldMap(""); m != nil || err != nil {
		t.Errorf("empty map: %v %v", m, err)
	}
}

// TestDecodeMapped: mapped members decode as their ticket fields, dropped
// ones are ignored, unknown members stay errors, and errors name the source's
// member.
func TestDecodeMapped(t *testing.T) {
	m, err := ParseFieldMap("id=ticket_id,project=proj,title=summary,-=priority")
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeMapped([]byte(`{"ticket_id":"WEB-9","tenant":"acme","proj":"acme-web","summary":"Login fails","body":"x","priority":3}`), m)
	if err != nil || r.ID != "WEB-9" || r.Project != "acme-web" || r.Title != "Login fails" || r.Body != "x" {
		t.Fatalf("decoded %+v, %v", r, err)
	}
	cases := []struct{ line, field string }{
		{`{"ticket_id":"WEB-9","tenant":"acme","proj":"acme-web","summary":7}`, "summary (title)"},
		{`{"ticket_id":"WEB-9","tenant":"acme","proj":"acme-web","summary":"t","assignee":"anne"}`, "assignee"},
		{`{"tenant":"acme","proj":"acme-web","summary":"t"}`, "ticket_id (id)"},
		{`{"ticket_id":"bad id","tenant":"acme","proj":"acme-web","summary":"t"}`, "ticket_id (id)"},
		{`{"ticket_id":"WEB-9","id":"WEB-8","tenant":"acme","proj":"acme-web","summary":"t"}`, "id"},
		{`{"ticket_id":"WEB-9","ticket_id":"WEB-8","tenant":"acme","proj":"acme-web","summary":"t"}`, "ticket_id"},
		{`["not an object"]`, "row"},
	}
	for _, c := range cases {
		_, err := DecodeMapped([]byte(c.line), m)
		var fe *clearance.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want a field error at %q", c.line, err, c.field)
		}
	}
}

// TestJSONLMapReportsLines: a mapped JSONL source reports a bad line with its
// file and line, in the source's names; the map is part of the source's name.
func TestJSONLMapReportsLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "export.jsonl")
	data := `{"ticket_id":"A-1","tenant":"acme","project":"p","summary":"one"}
{"ticket_id":"A-2","tenant":"acme","project":"p","summary":["two"]}
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	m, _ := ParseFieldMap("id=ticket_id,title=summary")
	src, err := NewJSONL(JSONLConfig{Path: path, Map: m})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(src.Name(), "?map=id=ticket_id,title=summary") {
		t.Errorf("name %q", src.Name())
	}
	var rows []SourceRow
	for b, err := range src.Read(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, b.Rows...)
	}
	if len(rows) != 2 || rows[0].Err != nil || rows[0].ID != "A-1" {
		t.Fatalf("rows %+v", rows)
	}
	if rows[1].Ref != "export.jsonl:2" || rows[1].Err == nil || !strings.HasPrefix(rows[1].Err.Error(), "summary (title): ") {
		t.Errorf("bad row: ref %s err %v", rows[1].Ref, rows[1].Err)
	}
}
