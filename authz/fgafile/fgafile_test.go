package fgafile_test

import (
	"testing"

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
