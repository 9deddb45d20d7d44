package strictjson

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

type inner struct {
	Projects []string `json:"projects"`
}

type doc struct {
	Query   string            `json:"query"`
	TopK    *int              `json:"top_k"`
	Filters *inner            `json:"filters"`
	Rows    []json.RawMessage `json:"rows"`
	At      time.Time         `json:"at"`
}

func TestUnmarshal(t *testing.T) {
	for _, c := range []struct{ in, field, reason string }{
		{"{\"query\":\"a\xff\"}", "query", "is not valid UTF-8"},
		{`{"query":"\ud800"}`, "query", "is not valid UTF-8"},
		{`{"query":"a","query":"b"}`, "query", "appears more than once"},
		{`{"Query":"a"}`, "Query", "unknown field"},
		{`{"filters":{"projects":["a"],"projects":[]}}`, "filters.projects", "appears more than once"},
		{"{\"filters\":{\"projects\":[\"a\",\"\xff\"]}}", "filters.projects[1]", "is not valid UTF-8"},
		{"{\"rows\":[{\"x\":\"\xff\"}]}", "rows[0].x", "is not valid UTF-8"},
		{`{"rows":[{"x":1,"x":2}]}`, "rows[0].x", "appears more than once"},
		{`{"top_k":"3"}`, "top_k", "must be a JSON number"},
		{`{"filters":[]}`, "filters", "must be a JSON object"},
		{`{"at":"yesterday"}`, "at", "must be an RFC 3339 time"},
		{`{"query":"a"} {}`, "", "unexpected data after the JSON value"},
		{`{"query":`, "", "truncated JSON"},
		{`[]`, "", "must be a JSON object"},
	} {
		var d doc
		err := Unmarshal([]byte(c.in), &d)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || (c.reason != "" && e.Reason != c.reason) {
			t.Errorf("%q: %#v (%v), want %s %q", c.in, e, err, c.field, c.reason)
		}
	}
	var d doc
	if err := Unmarshal([]byte(`{"query":"caf\u00e9","top_k":3,"rows":[{"a":1}]}`), &d); err != nil || d.Query != "café" || *d.TopK != 3 || string(d.Rows[0]) != `{"a":1}` {
		t.Fatalf("%+v %v", d, err)
	}
	if err := UnmarshalOpen([]byte(`{"query":"a","other":1}`), &d); err != nil {
		t.Fatal(err)
	}
	if err := Check([]byte(`{"a":{"b":1,"b":2}}`)); err == nil || err.(*Error).Field != "a.b" {
		t.Fatalf("check: %v", err)
	}
}
