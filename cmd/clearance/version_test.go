package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionFlag: --version and the version command print the same version.
func TestVersionFlag(t *testing.T) {
	out, err := runCLI(t, "--version")
	if err != nil || out != "clearance "+versionString()+"\n" {
		t.Fatalf("--version: %v %q", err, out)
	}
	out, err = runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "clearance "+versionString()+"\n") {
		t.Fatalf("version: %v %q", err, out)
	}
}

// TestBuildVersion: a stamped version wins, then the module version of a go
// install, then the commit of a build in a checkout; "dev" only without any.
func TestBuildVersion(t *testing.T) {
	vcs := func(mod string, s ...string) *debug.BuildInfo {
		info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/clearance-dev/clearance", Version: mod}}
		for i := 0; i+1 < len(s); i += 2 {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: s[i], Value: s[i+1]})
		}
		return info
	}
	for _, c := range []struct {
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{"v1.4.0", vcs("v1.3.0"), "v1.4.0"},
		{"dev", vcs("v1.3.0"), "v1.3.0"},
		{"dev", vcs("(devel)", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "false"), "dev-0123456789ab"},
		{"dev", vcs("(devel)", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "true"), "dev-0123456789ab+dirty"},
		{"dev", vcs("(devel)"), "dev"},
		{"dev", nil, "dev"},
	} {
		if got := buildVersion(c.stamped, c.info, c.info != nil); got != c.want {
			t.Errorf("buildVersion(%q, %+v) = %q, want %q", c.stamped, c.info, got, c.want)
		}
	}
}
