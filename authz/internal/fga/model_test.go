package fga

import (
	"slices"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/authz"
)

func TestMissing(t *testing.T) {
	want, err := authz.Model()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to string
		missing        []string
	}{
		{"same", "", "", nil},
		{"marker not needed", "type " + authz.ModelMarkerType + "\n", "", nil},
		{"relation", "    define can_edit_tickets: member or admin from tenant\n", "", []string{"relation project#can_edit_tickets"}},
		{"accepted user type", "define granted: [delegation, delegation with not_expired]", "define granted: [delegation]", []string{"relation project#granted accepting delegation with not_expired"}},
		{"condition", "current_time < expires_at", "current_time <= expires_at", []string{`condition not_expired expression "current_time < expires_at"`}},
	} {
		have, err := authz.ParseModel(strings.Replace(authz.ModelDSL, tc.from, tc.to, 1))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := Missing(want, have); !slices.Equal(got, tc.missing) {
			t.Errorf("%s: missing %q, want %q", tc.name, got, tc.missing)
		}
	}
}
