package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/internal/strictjson"
)

// decodeStrict reads one JSON object from r into v (internal/strictjson):
// unknown fields, duplicate members, case variants of field names, invalid
// UTF-8, wrong types, trailing data and an empty body are *clearance.FieldError
// values naming the field; a body over the server's limit surfaces as
// clearance.ErrTooLarge from the reader, and a body the client stopped sending
// as ErrRequestTimeout.
func decodeStrict(r io.Reader, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return clearance.Invalid("body", "is empty; want a JSON object")
	}
	if err := strictjson.Unmarshal(body, v); err != nil {
		return fieldError(err, "")
	}
	return nil
}

// readBody reads a whole request body (bounded by the server's body limit and
// the http.Server's ReadTimeout).
func readBody(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(r)
	var ne net.Error
	switch {
	case err == nil:
		return body, nil
	case errors.Is(err, clearance.ErrTooLarge) || isTooLarge(err):
		return nil, fmt.Errorf("request body: %w", clearance.ErrTooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		// The server's read deadline passed while the client still owed body
		// bytes: a stalled or very slow client, answered 408.
		return nil, fmt.Errorf("read request body: %v: %w", err, clearance.ErrRequestTimeout)
	case errors.Is(err, io.ErrUnexpectedEOF):
		// The client hung up (or lied in Content-Length) mid-body.
		return nil, clearance.Invalid("body", "ended before the announced length")
	}
	return nil, fmt.Errorf("read request body: %w", err)
}

// fieldError turns a strictjson error into a FieldError under prefix.
func fieldError(err error, prefix string) error {
	var se *strictjson.Error
	if !errors.As(err, &se) {
		return clearance.Invalid(orBody(prefix), "%v", err)
	}
	field := se.Field
	switch {
	case prefix == "":
	case field == "":
		field = prefix
	case strings.HasPrefix(field, "["):
		field = prefix + field
	default:
		field = prefix + "." + field
	}
	return clearance.Invalid(orBody(field), "%s", se.Reason)
}

func orBody(field string) string {
	if field == "" {
		return "body"
	}
	return field
}

// isTooLarge recognises http.MaxBytesReader's error without importing its type
// through every layer.
func isTooLarge(err error) bool {
	return strings.Contains(err.Error(), "request body too large")
}
