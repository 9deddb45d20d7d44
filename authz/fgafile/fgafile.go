// Package fgafile loads OpenFGA store files (the `fga model test` format, e.g.
// testdata/org.fga.yaml): the model, the tuples and the tests with their check and
// list_objects assertions, as clearance types.
package fgafile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// File is a loaded store file.
type File struct {
	Name string
	// Model is the DSL of model_file (or the inline model).
	Model  string
	Tuples []authz.Tuple
	Tests  []Test
}

// Test is one named test: its tuples (added to the file's tuples for this test only)
// and assertions.
type Test struct {
	Name        string
	Description string
	Tuples      []authz.Tuple
	Check       []CheckCase
	ListObjects []ListCase
}

// CheckCase asserts, for every user and object, the expected answer per relation.
type CheckCase struct {
	Users      []string
	Objects    []string
	Context    map[string]any
	Assertions map[string]bool
}

// ListCase asserts the exact objects ("type:id") a user has per relation.
type ListCase struct {
	User       string
	Type       string
	Context    map[string]any
	Assertions map[string][]string
}

type rawTuple struct {
	User      string `yaml:"user"`
	Relation  string `yaml:"relation"`
	Object    string `yaml:"object"`
	Condition *struct {
		Name    string         `yaml:"name"`
		Context map[string]any `yaml:"context"`
	} `yaml:"condition"`
}

type rawFile struct {
	Name      string     `yaml:"name"`
	Model     string     `yaml:"model"`
	ModelFile string     `yaml:"model_file"`
	Tuples    []rawTuple `yaml:"tuples"`
	Tests     []struct {
		Name        string     `yaml:"name"`
		Description string     `yaml:"description"`
		Tuples      []rawTuple `yaml:"tuples"`
		Check       []struct {
			User       string          `yaml:"user"`
			Users      []string        `yaml:"users"`
			Object     string          `yaml:"object"`
			Objects    []string        `yaml:"objects"`
			Context    map[string]any  `yaml:"context"`
			Assertions map[string]bool `yaml:"assertions"`
		} `yaml:"check"`
		ListObjects []struct {
			User       string              `yaml:"user"`
			Type       string              `yaml:"type"`
			Context    map[string]any      `yaml:"context"`
			Assertions map[string][]string `yaml:"assertions"`
		} `yaml:"list_objects"`
	} `yaml:"tests"`
}

// Load reads a store file; model_file is resolved relative to the file.
func Load(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read store file: %w", err)
	}
	f, modelFile, err := parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if modelFile != "" {
		m, err := os.ReadFile(filepath.Join(filepath.Dir(path), modelFile))
		if err != nil {
			return nil, fmt.Errorf("read model_file: %w", err)
		}
		f.Model = string(m)
	}
	return f, nil
}

// Parse reads a store file's content (for example embedded in the binary). It does
// not follow model_file: Model holds only an inline model; callers of the demo org use
// authz.ModelDSL, which is what its model_file names.
func Parse(data []byte) (*File, error) {
	f, _, err := parse(data)
	return f, err
}

func parse(raw []byte) (*File, string, error) {
	var rf rawFile
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		return nil, "", fmt.Errorf("%w: store file: %w", clearance.ErrInvalid, err)
	}
	f := &File{Name: rf.Name, Model: rf.Model}
	var err error
	if f.Tuples, err = tuples("tuples", rf.Tuples); err != nil {
		return nil, "", err
	}
	for i, rt := range rf.Tests {
		t := Test{Name: rt.Name, Description: rt.Description}
		if t.Tuples, err = tuples(fmt.Sprintf("tests[%d].tuples", i), rt.Tuples); err != nil {
			return nil, "", err
		}
		for j, c := range rt.Check {
			cc := CheckCase{Users: c.Users, Objects: c.Objects, Context: normalize(c.Context), Assertions: c.Assertions}
			if c.User != "" {
				cc.Users = append([]string{c.User}, cc.Users...)
			}
			if c.Object != "" {
				cc.Objects = append([]string{c.Object}, cc.Objects...)
			}
			if len(cc.Users) == 0 || len(cc.Objects) == 0 || len(cc.Assertions) == 0 {
				return nil, "", clearance.Invalid(fmt.Sprintf("tests[%d].check[%d]", i, j), "needs user(s), object(s) and assertions")
			}
			t.Check = append(t.Check, cc)
		}
		for j, l := range rt.ListObjects {
			if l.User == "" || l.Type == "" || len(l.Assertions) == 0 {
				return nil, "", clearance.Invalid(fmt.Sprintf("tests[%d].list_objects[%d]", i, j), "needs user, type and assertions")
			}
			t.ListObjects = append(t.ListObjects, ListCase{User: l.User, Type: l.Type, Context: normalize(l.Context), Assertions: l.Assertions})
		}
		f.Tests = append(f.Tests, t)
	}
	return f, rf.ModelFile, nil
}

func tuples(field string, rts []rawTuple) ([]authz.Tuple, error) {
	out := make([]authz.Tuple, 0, len(rts))
	for i, r := range rts {
		if r.User == "" || r.Relation == "" || r.Object == "" {
			return nil, clearance.Invalid(fmt.Sprintf("%s[%d]", field, i), "user, relation and object are required")
		}
		t := authz.Tuple{User: r.User, Relation: r.Relation, Object: r.Object}
		if r.Condition != nil {
			t.Condition = &authz.Condition{Name: r.Condition.Name, Context: normalize(r.Condition.Context)}
		}
		out = append(out, t)
	}
	return out, nil
}

// normalize turns YAML timestamps (decoded as time.Time) back into RFC 3339 strings,
// which is what OpenFGA's condition context expects.
func normalize(m map[string]any) map[string]any {
	for k, v := range m {
		if t, ok := v.(time.Time); ok {
			m[k] = t.UTC().Format(time.RFC3339Nano)
		}
	}
	return m
}

// Assertions counts the individual assertions (one per user, object and relation
// of a check; one per relation of a list_objects).
func (f *File) Assertions() int {
	n := 0
	for _, t := range f.Tests {
		for _, c := range t.Check {
			n += len(c.Users) * len(c.Objects) * len(c.Assertions)
		}
		for _, l := range t.ListObjects {
			n += len(l.Assertions)
		}
	}
	return n
}

// Writer is the part of authz.Engine that Load needs.
type Writer interface {
	Write(ctx context.Context, writes, deletes []authz.Tuple) error
}

// WriteTuples writes the file's tuples to w in calls of at most chunk tuples (0:
// one call).
func (f *File) WriteTuples(ctx context.Context, w Writer, chunk int) error {
	if chunk <= 0 {
		chunk = max(len(f.Tuples), 1)
	}
	for part := range slices.Chunk(f.Tuples, chunk) {
		if err := w.Write(ctx, part, nil); err != nil {
			return fmt.Errorf("load %s: %w", f.Name, err)
		}
	}
	return nil
}
