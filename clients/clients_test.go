package clients

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	bin       string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// clearanceBin builds cmd/clearance once for both suites; each starts its own
// `serve --dev` on a temporary data dir with it (CLEARANCE_BIN).
func clearanceBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "clearance-clients-"); buildErr != nil {
			return
		}
		bin = filepath.Join(binDir, "clearance")
		out, err := exec.Command("go", "build", "-o", bin, "../cmd/clearance").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("build clearance: %v", buildErr)
	}
	return bin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// need finds a tool of a suite: missing, the suite skips, except in CI.
func need(t *testing.T, tool, why string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		missing(t, "%s not found: %s (scripts/install-deps.sh installs it)", tool, why)
	}
}

func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+"; skipping (in CI this fails)", args...)
}

// runSuite runs a client's test suite and shows its output on failure, and
// its closing lines (the counts) otherwise.
func runSuite(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CLEARANCE_BIN="+clearanceBin(t))
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("%s %s:\n%s", name, strings.Join(args, " "), strings.Join(lines[max(0, len(lines)-9):], "\n"))
}

// TestTypeScript runs clients/typescript's suite (node --test): the client and
// the LangChain.js retriever against serve --dev, and the README's example.
func TestTypeScript(t *testing.T) {
	need(t, "node", "the TypeScript client's tests need node 20 or later")
	need(t, "npm", "the TypeScript client's tests run with npm")
	if out, err := exec.Command("node", "-e", "process.exit(Number(process.versions.node.split('.')[0]) >= 20 ? 0 : 1)").CombinedOutput(); err != nil {
		missing(t, "node is older than 20 (%v %s)", err, out)
	}
	if _, err := os.Stat("typescript/node_modules/.package-lock.json"); err != nil {
		missing(t, "clients/typescript has no node_modules: run `npm ci` there (make deps does)")
	}
	runSuite(t, "typescript", "npm", "test")
}

// TestPython runs clients/python's suite (unittest): the client and the
// retriever against serve --dev, and the README's example.
func TestPython(t *testing.T) {
	need(t, "python3", "the Python client's tests need python3 (3.9 or later)")
	if out, err := exec.Command("python3", "-c", "import sys; sys.exit(sys.version_info < (3, 9))").CombinedOutput(); err != nil {
		missing(t, "python3 is older than 3.9 (%v %s)", err, out)
	}
	runSuite(t, "python", "python3", "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-v")
}

// TestREADMEShowsTheExamples keeps the README's client snippets identical to
// the example files the suites run.
func TestREADMEShowsTheExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"typescript/examples/readme.mjs", "python/examples/readme.py", "typescript/examples/mcp-remote.json"} {
		ex, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(readme), string(ex)) {
			t.Errorf("README.md does not show clients/%s verbatim:\n%s", f, ex)
		}
		if n := strings.Count(strings.TrimSpace(string(ex)), "\n") + 1; n >= 10 {
			t.Errorf("clients/%s has %d lines; the README promises under 10", f, n)
		}
	}
}
