package image

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"sigs.k8s.io/yaml"
)

var root = filepath.Join("..", "..")

// parseDockerfile parses the Dockerfile with BuildKit's own parser (the one
// `docker build` and buildctl use: instruction flags such as RUN --mount are
// validated) and fails on any warning of its parser or linter.
func parseDockerfile(t *testing.T) []instructions.Stage {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile:%d: %s", w.Location.Start.Line, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		t.Errorf("Dockerfile:%d: %s: %s", line, rule, msg)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatal(err)
	}
	// RUN's --mount options are parsed at expansion: expand every RUN with
	// variables left as they are.
	for _, s := range stages {
		for _, r := range commands[*instructions.RunCommand](s) {
			if err := r.Expand(func(w string) (string, error) { return w, nil }); err != nil {
				t.Errorf("Dockerfile:%d: %v", r.Location()[0].Start.Line, err)
			}
		}
	}
	return stages
}

// commands are a stage's commands of type T.
func commands[T instructions.Command](s instructions.Stage) []T {
	var out []T
	for _, c := range s.Commands {
		if tc, ok := c.(T); ok {
			out = append(out, tc)
		}
	}
	return out
}

// chartUser is the Helm chart's podSecurityContext.runAsUser.
func chartUser(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "helm", "clearance", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		PodSecurityContext struct {
			RunAsUser int64 `json:"runAsUser"`
		} `json:"podSecurityContext"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.PodSecurityContext.RunAsUser
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// A static build: no cgo (the final image has no libc), no local paths.
	var run []string
	for _, r := range commands[*instructions.RunCommand](build) {
		run = append(run, r.CmdLine...)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/clearance"} {
		if !strings.Contains(strings.Join(run, " "), want) {
			t.Errorf("the build stage's RUN lacks %s", want)
		}
	}

	// The runtime stage: empty or distroless, and nothing runs a shell in it.
	if final.BaseName != "scratch" && !strings.Contains(final.BaseName, "distroless") {
		t.Errorf("final stage FROM %s, want scratch or a distroless image", final.BaseName)
	}
	if runs := commands[*instructions.RunCommand](final); len(runs) > 0 {
		t.Errorf("RUN in the final stage %v: it has no shell", runs[0].CmdLine)
	}
	entry := commands[*instructions.EntrypointCommand](final)
	if len(entry) != 1 || entry[0].PrependShell {
		t.Errorf("final stage ENTRYPOINT %+v: want one, in exec (JSON) form: there is no shell", entry)
	}
	for _, c := range commands[*instructions.CmdCommand](final) {
		if c.PrependShell {
			t.Errorf("CMD %v in shell form: there is no shell", c.CmdLine)
		}
	}

	// A numeric non-root user, the chart's: runAsNonRoot can only verify a
	// numeric uid, and the data dir belongs to it.
	users := commands[*instructions.UserCommand](final)
	if len(users) != 1 {
		t.Fatalf("final stage USER %+v, want exactly one", users)
	}
	uid, err := strconv.ParseInt(strings.Split(users[0].User, ":")[0], 10, 64)
	if err != nil || uid == 0 {
		t.Fatalf("USER %s: want a numeric non-zero uid", users[0].User)
	}
	if cu := chartUser(t); cu != uid {
		t.Errorf("image user %d, chart runAsUser %d", uid, cu)
	}
	copies := commands[*instructions.CopyCommand](final)
	if !slices.ContainsFunc(copies, func(c *instructions.CopyCommand) bool {
		return strings.HasPrefix(c.Chown, strconv.FormatInt(uid, 10)) && c.DestPath == "/var/lib/clearance"
	}) {
		t.Error("the data dir /var/lib/clearance is not created for the image's user")
	}
	if !slices.ContainsFunc(copies, func(c *instructions.CopyCommand) bool {
		return slices.ContainsFunc(c.SourcePaths, func(p string) bool { return strings.HasSuffix(p, "ca-certificates.crt") })
	}) {
		t.Error("no CA certificates: HTTPS to the token issuer, OpenFGA or the embedder would fail")
	}

	// Listen beyond loopback, on the port the chart's probes use.
	env := map[string]string{}
	for _, e := range commands[*instructions.EnvCommand](final) {
		for _, kv := range e.Env {
			env[kv.Key] = kv.Value
		}
	}
	if env["CLEARANCE_ADDR"] != ":8080" || env["CLEARANCE_DATA_DIR"] != "/var/lib/clearance" {
		t.Errorf("ENV %v: want CLEARANCE_ADDR=:8080 and CLEARANCE_DATA_DIR=/var/lib/clearance", env)
	}
	if !slices.ContainsFunc(commands[*instructions.ExposeCommand](final), func(e *instructions.ExposeCommand) bool {
		return slices.Contains(e.Ports, "8080")
	}) {
		t.Error("EXPOSE 8080 missing")
	}
}

// TestDockerignore: the build context keeps everything `go build` embeds.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		for _, keep := range []string{"go.mod", "go.sum", "testdata/tickets.jsonl", "api/openapi.yaml", "internal/pgschema/core/00001_baseline.sql"} {
			if ok, _ := filepath.Match(p, keep); ok || p == keep || strings.HasPrefix(keep, p+"/") {
				t.Errorf(".dockerignore %q drops %s, which the build needs", p, keep)
			}
		}
	}
}

// TestKoConfig: `ko build` makes the same static binary; its base image, if
// set, is pinned by digest (ko's default is a distroless static image running
// as uid 65532).
func TestKoConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, ".ko.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ko struct {
		DefaultBaseImage string   `json:"defaultBaseImage"`
		DefaultPlatforms []string `json:"defaultPlatforms"`
		Builds           []struct {
			ID      string   `json:"id"`
			Main    string   `json:"main"`
			Env     []string `json:"env"`
			Flags   []string `json:"flags"`
			Ldflags []string `json:"ldflags"`
		} `json:"builds"`
	}
	if err := yaml.UnmarshalStrict(b, &ko); err != nil {
		t.Fatal(err)
	}
	if ko.DefaultBaseImage != "" && !strings.Contains(ko.DefaultBaseImage, "@sha256:") {
		t.Errorf("defaultBaseImage %s is not pinned by digest", ko.DefaultBaseImage)
	}
	if len(ko.Builds) != 1 || ko.Builds[0].Main != "./cmd/clearance" {
		t.Fatalf("builds %+v, want one of ./cmd/clearance", ko.Builds)
	}
	if !slices.Contains(ko.Builds[0].Env, "CGO_ENABLED=0") || !slices.Contains(ko.Builds[0].Flags, "-trimpath") {
		t.Errorf("build %+v: want CGO_ENABLED=0 and -trimpath", ko.Builds[0])
	}
}
