// Package tuplefile reads relationship tuples from files for bulk loading: an
// OpenFGA store file (.fga.yaml, its top-level tuples), JSONL (one tuple
// object a line) or CSV (user,relation,object[,condition[,context JSON]]).
// Every tuple carries its line, so a bad one is reported where it is, and
// Validator checks tuples against the authorization model before anything is
// written: a load of any size is refused as a whole, not half written.
//
// JSONL and CSV are streamed (any size); a YAML store file is read whole.
package tuplefile

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"iter"
	"path/filepath"
	"strings"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"gopkg.in/yaml.v3"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/internal/fga"
	"github.com/clearance-dev/clearance/internal/strictjson"
)

// Format is a tuple file format.
type Format string

// Formats.
const (
	YAML  Format = "yaml"
	JSONL Format = "jsonl"
	CSV   Format = "csv"
)

// ParseFormat checks a --format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case YAML, JSONL, CSV:
		return f, nil
	case "yml":
		return YAML, nil
	}
	return "", clearance.Invalid("format", "%q: want yaml, jsonl or csv", s)
}

// Detect picks the format from the file name, else from the first bytes
// (stdin): "{" is JSONL, a first line with commas and no colon-space is CSV,
// anything else YAML.
func Detect(name string, head []byte) Format {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return YAML
	case ".jsonl", ".ndjson", ".json":
		return JSONL
	case ".csv":
		return CSV
	}
	head = bytes.TrimLeft(head, " \t\r\n\ufeff")
	if len(head) > 0 && head[0] == '{' {
		return JSONL
	}
	first, _, _ := bytes.Cut(head, []byte("\n"))
	if bytes.Contains(first, []byte(",")) && !bytes.Contains(first, []byte(": ")) {
		return CSV
	}
	return YAML
}

// Entry is one tuple and the line (1-based) it starts on.
type Entry struct {
	Line  int
	Tuple authz.Tuple
}

// LineError is a tuple (or a line) that cannot be used.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns the cause (an ErrInvalid kind for bad input).
func (e *LineError) Unwrap() error { return e.Err }

// maxLine bounds one JSONL line (a tuple with a large condition context).
const maxLine = 1 << 20

// Read yields the tuples of r in order. A line that cannot be parsed yields a
// *LineError and reading goes on (the caller decides how many to report); an
// I/O error ends the sequence.
func Read(r io.Reader, f Format) iter.Seq2[Entry, error] {
	switch f {
	case JSONL:
		return readJSONL(r)
	case CSV:
		return readCSV(r)
	default:
		return readYAML(r)
	}
}

// jsonTuple is a JSONL line: the API's tuple shape, strictly decoded.
type jsonTuple struct {
	User      string `json:"user"`
	Relation  string `json:"relation"`
	Object    string `json:"object"`
	Condition *struct {
		Name    string         `json:"name"`
		Context map[string]any `json:"context"`
	} `json:"condition"`
}

func readJSONL(r io.Reader) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		line := 0
		for sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 || b[0] == '#' {
				continue
			}
			var jt jsonTuple
			if err := strictjson.Unmarshal(b, &jt); err != nil {
				if !yield(Entry{Line: line}, &LineError{Line: line, Err: fmt.Errorf("%w: %w", clearance.ErrInvalid, err)}) {
					return
				}
				continue
			}
			t := authz.Tuple{User: jt.User, Relation: jt.Relation, Object: jt.Object}
			if jt.Condition != nil {
				t.Condition = &authz.Condition{Name: jt.Condition.Name, Context: jt.Condition.Context}
			}
			if !yield(Entry{Line: line, Tuple: t}, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = &LineError{Line: line + 1, Err: fmt.Errorf("%w: line over %d bytes", clearance.ErrInvalid, maxLine)}
			}
			yield(Entry{}, err)
		}
	}
}

func readCSV(r io.Reader) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		cr := csv.NewReader(r)
		cr.FieldsPerRecord = -1
		cr.Comment = '#'
		cr.TrimLeadingSpace = true
		cr.ReuseRecord = true
		first := true
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				return
			}
			line, _ := cr.FieldPos(0)
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) {
					if !yield(Entry{Line: pe.StartLine}, &LineError{Line: pe.StartLine, Err: fmt.Errorf("%w: %w", clearance.ErrInvalid, pe.Err)}) {
						return
					}
					continue
				}
				yield(Entry{}, err)
				return
			}
			if first {
				first = false
				if len(rec) >= 3 && strings.EqualFold(rec[0], "user") && strings.EqualFold(rec[1], "relation") {
					continue // header
				}
			}
			e, err := csvTuple(rec)
			if err != nil {
				if !yield(Entry{Line: line}, &LineError{Line: line, Err: err}) {
					return
				}
				continue
			}
			if !yield(Entry{Line: line, Tuple: e}, nil) {
				return
			}
		}
	}
}

func csvTuple(rec []string) (authz.Tuple, error) {
	if len(rec) < 3 || len(rec) > 5 {
		return authz.Tuple{}, clearance.Invalid("record", "%d fields; want user,relation,object[,condition[,context]]", len(rec))
	}
	t := authz.Tuple{User: strings.TrimSpace(rec[0]), Relation: strings.TrimSpace(rec[1]), Object: strings.TrimSpace(rec[2])}
	if len(rec) >= 4 && strings.TrimSpace(rec[3]) != "" {
		t.Condition = &authz.Condition{Name: strings.TrimSpace(rec[3])}
		if len(rec) == 5 && strings.TrimSpace(rec[4]) != "" {
			if err := strictjson.Unmarshal([]byte(rec[4]), &t.Condition.Context); err != nil {
				return authz.Tuple{}, clearance.Invalid("context", "%v", err)
			}
		}
	} else if len(rec) == 5 && strings.TrimSpace(rec[4]) != "" {
		return authz.Tuple{}, clearance.Invalid("context", "a context needs a condition name")
	}
	return t, nil
}

type yamlTuple struct {
	User      string `yaml:"user"`
	Relation  string `yaml:"relation"`
	Object    string `yaml:"object"`
	Condition *struct {
		Name    string         `yaml:"name"`
		Context map[string]any `yaml:"context"`
	} `yaml:"condition"`
}

// readYAML yields the top-level tuples of a store file (tests' tuples are
// per-test fixtures, not data), or the items of a document that is a plain
// list of tuples.
func readYAML(r io.Reader) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		var doc yaml.Node
		if err := yaml.NewDecoder(r).Decode(&doc); err != nil {
			if err == io.EOF {
				return
			}
			yield(Entry{Line: 1}, &LineError{Line: yamlLine(err), Err: fmt.Errorf("%w: %w", clearance.ErrInvalid, err)})
			return
		}
		root := &doc
		if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
			root = root.Content[0]
		}
		var seq *yaml.Node
		switch root.Kind {
		case yaml.SequenceNode:
			seq = root
		case yaml.MappingNode:
			for i := 0; i+1 < len(root.Content); i += 2 {
				if root.Content[i].Value == "tuples" {
					seq = root.Content[i+1]
				}
			}
		}
		if seq == nil {
			return // a store file without tuples
		}
		if seq.Kind != yaml.SequenceNode {
			yield(Entry{Line: seq.Line}, &LineError{Line: seq.Line, Err: clearance.Invalid("tuples", "is not a list")})
			return
		}
		for _, item := range seq.Content {
			var yt yamlTuple
			if err := decodeKnown(item, &yt); err != nil {
				if !yield(Entry{Line: item.Line}, &LineError{Line: item.Line, Err: fmt.Errorf("%w: %w", clearance.ErrInvalid, err)}) {
					return
				}
				continue
			}
			t := authz.Tuple{User: yt.User, Relation: yt.Relation, Object: yt.Object}
			if yt.Condition != nil {
				t.Condition = &authz.Condition{Name: yt.Condition.Name, Context: normalize(yt.Condition.Context)}
			}
			if !yield(Entry{Line: item.Line, Tuple: t}, nil) {
				return
			}
		}
	}
}

// decodeKnown decodes a node refusing unknown keys (a misspelt "relaton" must
// not become an empty relation).
func decodeKnown(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// yamlLine pulls "line N" out of a yaml error, else 1.
func yamlLine(err error) int {
	var n int
	if i := strings.Index(err.Error(), "line "); i >= 0 {
		fmt.Sscanf(err.Error()[i:], "line %d", &n)
	}
	return max(n, 1)
}

// normalize turns YAML timestamps back into RFC 3339 strings, which is what
// OpenFGA's condition context expects.
func normalize(m map[string]any) map[string]any {
	for k, v := range m {
		if t, ok := v.(time.Time); ok {
			m[k] = t.UTC().Format(time.RFC3339Nano)
		}
	}
	return m
}

// Validator checks tuples against one authorization model, the same checks the
// engines run before a write (types, relations, user types, conditions and
// their parameter types).
type Validator struct {
	v *fga.Validator
}

// NewValidator builds a validator for model (nil: clearance's model).
func NewValidator(model *openfgav1.AuthorizationModel) (*Validator, error) {
	if model == nil {
		var err error
		if model, err = authz.Model(); err != nil {
			return nil, err
		}
	}
	v, err := fga.NewValidator(model)
	if err != nil {
		return nil, err
	}
	return &Validator{v: v}, nil
}

// CheckWrite reports whether t may be stored.
func (v *Validator) CheckWrite(t authz.Tuple) error {
	if t.Condition != nil && t.Condition.Name == "" {
		return clearance.Invalid("condition.name", "is required")
	}
	return v.v.Validate(t, true)
}

// CheckDelete reports whether t names a tuple the model could hold. Deletes
// match by user, relation and object: the condition is ignored (see
// ForDelete).
func (v *Validator) CheckDelete(t authz.Tuple) error {
	return v.v.Validate(ForDelete(t), false)
}

// ForDelete is t without its condition, the key a delete matches.
func ForDelete(t authz.Tuple) authz.Tuple {
	t.Condition = nil
	return t
}
