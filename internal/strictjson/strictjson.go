// Package strictjson decodes JSON the way clearance's inputs must be read:
// exact member names (no case folding), no duplicate members, valid UTF-8 only
// (never replaced with U+FFFD), no unknown members, one value and nothing after
// it. encoding/json does none of the first three, so a body or a token could
// say one thing to a validator and another to a decoder.
//
// It uses github.com/go-json-experiment/json, the code that becomes Go's
// encoding/json/v2 (in Go 1.26 only behind GOEXPERIMENT=jsonv2), whose
// defaults are exactly these rules. Errors are *Error values naming the member
// in clearance's field notation ("tickets[0].title").
package strictjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	json "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Error is a decoding error located at a member.
type Error struct {
	// Field is the member in dotted notation ("filters.projects[0]"); empty
	// for the document as a whole.
	Field string
	// Reason says what is wrong, for the caller ("is not valid UTF-8").
	Reason string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Unmarshal decodes data into v strictly, unknown members included.
func Unmarshal(data []byte, v any) error {
	return decode(data, v, json.RejectUnknownMembers(true))
}

// UnmarshalOpen is Unmarshal that ignores unknown members (a JWT carries claims
// clearance does not read); duplicates, case variants of the names v declares
// and invalid UTF-8 are still errors (see CaseVariant for the names).
func UnmarshalOpen(data []byte, v any) error {
	return decode(data, v, json.RejectUnknownMembers(false))
}

func decode(data []byte, v any, opts ...json.Options) error {
	if err := json.Unmarshal(data, v, opts...); err != nil {
		return locate(err)
	}
	return nil
}

// Check validates data without decoding it: one JSON value, valid UTF-8, no
// duplicate member names anywhere.
func Check(data []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	if _, err := dec.ReadValue(); err != nil {
		return locate(err)
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return &Error{Reason: "unexpected data after the JSON value"}
	}
	return nil
}

// locate turns a json error into an *Error at the member it names.
func locate(err error) error {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &Error{Reason: "truncated JSON"}
	case errors.As(err, &syn):
		field := Field(syn.JSONPointer)
		switch {
		case errors.Is(syn.Err, jsontext.ErrDuplicateName):
			return &Error{Field: field, Reason: "appears more than once"}
		case strings.Contains(syn.Err.Error(), "invalid UTF-8"), strings.Contains(syn.Err.Error(), "surrogate"):
			return &Error{Field: field, Reason: "is not valid UTF-8"}
		case strings.Contains(syn.Err.Error(), "after top-level value"):
			return &Error{Reason: "unexpected data after the JSON value"}
		}
		return &Error{Field: field, Reason: fmt.Sprintf("invalid JSON at byte %d", syn.ByteOffset)}
	case errors.As(err, &sem):
		field := Field(sem.JSONPointer)
		switch {
		case sem.GoType == reflect.TypeFor[time.Time]():
			return &Error{Field: field, Reason: "must be an RFC 3339 time"}
		case errors.Is(sem.Err, json.ErrUnknownName):
			return &Error{Field: field, Reason: "unknown field"}
		case sem.GoType != nil && sem.JSONKind != 0 && sem.Err == nil:
			return &Error{Field: field, Reason: "must be a JSON " + kind(sem.GoType)}
		case sem.Err != nil:
			var nested *Error
			if errors.As(sem.Err, &nested) {
				// A json.Unmarshaler that decodes strictly itself.
				return &Error{Field: join(field, nested.Field), Reason: nested.Reason}
			}
			return &Error{Field: field, Reason: sem.Err.Error()}
		case sem.GoType != nil:
			return &Error{Field: field, Reason: "must be a JSON " + kind(sem.GoType)}
		}
		return &Error{Field: field, Reason: "invalid value"}
	}
	return &Error{Reason: err.Error()}
}

// Field turns a JSON pointer ("/tickets/0/title") into clearance's field
// notation ("tickets[0].title").
func Field(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b
	}
	return a + "." + b
}

func kind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	}
	return t.Kind().String()
}
