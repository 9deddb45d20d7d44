package indexer

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/internal/strictjson"
)

// ticketFields are the members of a JSONL ticket object, the targets of a
// FieldMap.
var ticketFields = []string{"id", "tenant", "project", "title", "body", "updated_at", "deleted"}

// FieldMap renames the top-level members of a source's JSON objects to ticket
// fields before strict decoding, so an export with its own names
// ("ticket_id", "summary") is indexed without rewriting it. Members the map
// drops are ignored; every other member must still be a ticket field (an
// unknown one is an error naming it, as without a map).
type FieldMap struct {
	rename map[string]string // source member -> ticket field
	drop   map[string]bool   // source members ignored
	spec   string            // canonical form, for the source's name
}

// ParseFieldMap reads "id=ticket_id,title=summary,-=priority": ticket field =
// source member, and "-=member" to ignore a member.
func ParseFieldMap(s string) (*FieldMap, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := &FieldMap{rename: map[string]string{}, drop: map[string]bool{}}
	targets := map[string]string{}
	var canon []string
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, clearance.Invalid("map", "%q is not field=member", kv)
		}
		if _, dup := m.rename[v]; dup || m.drop[v] {
			return nil, clearance.Invalid("map", "source member %q is mapped twice", v)
		}
		if k == "-" {
			m.drop[v] = true
			canon = append(canon, k+"="+v)
			continue
		}
		if !slices.Contains(ticketFields, k) {
			return nil, clearance.Invalid("map", "unknown ticket field %q (want %s, or - to ignore a member)", k, strings.Join(ticketFields, ", "))
		}
		if prev, dup := targets[k]; dup {
			return nil, clearance.Invalid("map", "ticket field %q is mapped from both %q and %q", k, prev, v)
		}
		targets[k] = v
		if k != v {
			m.rename[v] = k
		}
		canon = append(canon, k+"="+v)
	}
	slices.Sort(canon)
	m.spec = strings.Join(canon, ",")
	return m, nil
}

// String is the canonical mapping (sorted).
func (m *FieldMap) String() string {
	if m == nil {
		return ""
	}
	return m.spec
}

// source names the member a ticket field came from, for errors.
func (m *FieldMap) source(ticketField string) string {
	for src, dst := range m.rename {
		if dst == ticketField {
			return src
		}
	}
	return ""
}

// DecodeMapped is DecodeRow after renaming data's top-level members with m
// (nil: DecodeRow). The row is also validated, so that every error, a
// validation error included, names the source's member ("summary (title):
// ...") rather than a field the source does not have.
func DecodeMapped(data []byte, m *FieldMap) (Row, error) {
	if m == nil {
		return DecodeRow(data, "")
	}
	// The source as it is: one value, valid UTF-8, no duplicate member.
	if err := strictjson.Check(data); err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) && se.Field != "" {
			return Row{}, clearance.Invalid(se.Field, "%s", se.Reason)
		}
		return Row{}, clearance.Invalid("row", "%v", err)
	}
	renamed, err := m.apply(data)
	if err != nil {
		return Row{}, err
	}
	r, err := DecodeRow(renamed, "")
	if err == nil {
		err = r.Validate("")
	}
	return r, m.blame(err)
}

// apply rewrites the top-level member names.
func (m *FieldMap) apply(data []byte) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	tok, err := dec.ReadToken()
	if err != nil || tok.Kind() != '{' {
		return nil, clearance.Invalid("row", "must be a JSON object")
	}
	var buf bytes.Buffer
	enc := jsontext.NewEncoder(&buf)
	if err := enc.WriteToken(jsontext.BeginObject); err != nil {
		return nil, err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return nil, clearance.Invalid("row", "%v", err)
		}
		n := name.String() // the token is only valid until the next read
		val, err := dec.ReadValue()
		if err != nil {
			return nil, clearance.Invalid(n, "%v", err)
		}
		if m.drop[n] {
			continue
		}
		if dst, ok := m.rename[n]; ok {
			n = dst
		} else if src := m.source(n); src != "" {
			// The source has the ticket field's own name too: which one is meant?
			return nil, clearance.Invalid(n, "the map takes %s from %q; the source has %q as well (map it elsewhere or drop it with -=%s)", n, src, n, n)
		}
		if err := enc.WriteToken(jsontext.String(n)); err != nil {
			return nil, err
		}
		if err := enc.WriteValue(val); err != nil {
			return nil, err
		}
	}
	if err := enc.WriteToken(jsontext.EndObject); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// blame renames the ticket field of a field error back to the source member.
func (m *FieldMap) blame(err error) error {
	fe, ok := err.(*clearance.FieldError)
	if !ok {
		return err
	}
	head, rest, _ := strings.Cut(fe.Field, ".")
	src := m.source(head)
	if src == "" {
		return err
	}
	field := fmt.Sprintf("%s (%s)", src, head)
	if rest != "" {
		field += "." + rest
	}
	return &clearance.FieldError{Field: field, Reason: fe.Reason}
}
