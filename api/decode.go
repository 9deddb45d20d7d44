package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/clearance-dev/clearance"
)

// decodeStrict reads one JSON object from r into v. Unknown fields, wrong types,
// trailing data and an empty body are *clearance.FieldError values naming the
// field; a body over the server's limit surfaces as clearance.ErrTooLarge from
// the reader.
func decodeStrict(r io.Reader, v any) error {
	body, err := io.ReadAll(r)
	if err != nil {
		if errors.Is(err, clearance.ErrTooLarge) || isTooLarge(err) {
			return fmt.Errorf("request body: %w", clearance.ErrTooLarge)
		}
		return fmt.Errorf("read request body: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return clearance.Invalid("body", "is empty; want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return clearance.Invalid("body", "unexpected data after the JSON object")
	}
	return nil
}

// isTooLarge recognises http.MaxBytesReader's error without importing its type
// through every layer.
func isTooLarge(err error) bool {
	return strings.Contains(err.Error(), "request body too large")
}

func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return clearance.Invalid(field, "must be a JSON %s", jsonKind(typeErr.Type.Kind().String()))
	case errors.As(err, &syntaxErr):
		return clearance.Invalid("body", "malformed JSON at byte %d", syntaxErr.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return clearance.Invalid(name, "unknown field")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return clearance.Invalid("body", "truncated JSON")
	}
	return clearance.Invalid("body", "%v", err)
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "int32", "float64", "float32", "uint", "uint64":
		return "number"
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	}
	return k
}
