package image

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var root = filepath.Join("..", "..")

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

// stage is one FROM and what follows it.
type stage struct {
	from  string
	instr []instruction
}

func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		stages  []stage
		logical string
	)
	flush := func() {
		line := strings.TrimSpace(logical)
		logical = ""
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, stage{from: in.args})
			return
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s before the first FROM", in.cmd)
			}
			return
		}
		s := &stages[len(stages)-1]
		s.instr = append(s.instr, in)
	}
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, "\\"); ok {
			logical += cont + " "
			continue
		}
		logical += trimmed
		flush()
	}
	flush()
	return stages
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.instr {
		if in.cmd == cmd {
			out = append(out, in.args)
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
	run := strings.Join(build.all("RUN"), " ")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/clearance"} {
		if !strings.Contains(run, want) {
			t.Errorf("the build stage's RUN lacks %s", want)
		}
	}

	// The runtime stage: empty or distroless, and nothing runs a shell in it.
	if base := strings.Fields(final.from)[0]; base != "scratch" && !strings.Contains(base, "distroless") {
		t.Errorf("final stage FROM %s, want scratch or a distroless image", base)
	}
	if runs := final.all("RUN"); len(runs) > 0 {
		t.Errorf("RUN in the final stage %q: it has no shell", runs)
	}
	for _, cmd := range []string{"ENTRYPOINT", "CMD"} {
		for _, a := range final.all(cmd) {
			if !strings.HasPrefix(a, "[") {
				t.Errorf("%s %s: want the exec (JSON) form, there is no shell", cmd, a)
			}
		}
	}
	if len(final.all("ENTRYPOINT")) != 1 {
		t.Errorf("final stage ENTRYPOINT %q, want one", final.all("ENTRYPOINT"))
	}

	// A numeric non-root user, the chart's: runAsNonRoot can only verify a
	// numeric uid, and the data dir belongs to it.
	users := final.all("USER")
	if len(users) != 1 {
		t.Fatalf("final stage USER %q, want exactly one", users)
	}
	uid, err := strconv.ParseInt(strings.Split(users[0], ":")[0], 10, 64)
	if err != nil || uid == 0 {
		t.Fatalf("USER %s: want a numeric non-zero uid", users[0])
	}
	if cu := chartUser(t); cu != uid {
		t.Errorf("image user %d, chart runAsUser %d", uid, cu)
	}
	if !slices.ContainsFunc(final.all("COPY"), func(a string) bool {
		return strings.Contains(a, "--chown="+strconv.FormatInt(uid, 10)) && strings.HasSuffix(a, " /var/lib/clearance")
	}) {
		t.Error("the data dir /var/lib/clearance is not created for the image's user")
	}

	// Listen beyond loopback, on the port the chart's probes use.
	env := strings.Join(final.all("ENV"), " ")
	if !regexp.MustCompile(`CLEARANCE_ADDR=:8080\b`).MatchString(env) || !strings.Contains(env, "CLEARANCE_DATA_DIR=/var/lib/clearance") {
		t.Errorf("ENV %q: want CLEARANCE_ADDR=:8080 and CLEARANCE_DATA_DIR=/var/lib/clearance", env)
	}
	if !slices.Contains(final.all("EXPOSE"), "8080") {
		t.Error("EXPOSE 8080 missing")
	}
	if !slices.ContainsFunc(final.all("COPY"), func(a string) bool { return strings.Contains(a, "ca-certificates.crt") }) {
		t.Error("no CA certificates: HTTPS to the token issuer, OpenFGA or the embedder would fail")
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
