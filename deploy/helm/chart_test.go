package helm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const chartDir = "clearance"

// helmBin finds helm on PATH or in GOPATH/bin (scripts/install-deps.sh puts it
// there). Missing helm skips the test, except in CI, where it fails.
func helmBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "helm is not installed: run scripts/install-deps.sh (go install helm.sh/helm/v4/cmd/helm)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// helmError is a failed helm run; Output is what helm printed (the arguments
// are not in it, so a test matching it sees helm's own reasons only).
type helmError struct {
	Args   []string
	Err    error
	Output string
}

func (e *helmError) Error() string {
	return fmt.Sprintf("helm %s: %v\n%s", strings.Join(e.Args, " "), e.Err, e.Output)
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &helmError{Args: args, Err: err, Output: stdout.String() + stderr.String()}
	}
	return stdout.String(), nil
}

// rendered is one `helm template` output, decoded.
type rendered struct {
	deployment     *appsv1.Deployment
	service        *corev1.Service
	serviceAccount *corev1.ServiceAccount
	pdb            *policyv1.PodDisruptionBudget
	serviceMonitor *monitoringv1.ServiceMonitor
}

// render runs helm template with the values files and decodes every manifest
// strictly: an unknown or misplaced field, a duplicate key, a wrong type or a
// kind the chart should not render fails the test.
func render(t *testing.T, valuesFiles ...string) rendered {
	t.Helper()
	args := []string{"template", "rel", chartDir, "--namespace", "ns"}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	var r rendered
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			t.Fatalf("not strict YAML: %v\n%s", err, doc)
		}
		var meta struct{ APIVersion, Kind string }
		if err := json.Unmarshal(js, &meta); err != nil {
			t.Fatal(err)
		}
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			r.deployment = &appsv1.Deployment{}
			obj = r.deployment
		case "v1 Service":
			r.service = &corev1.Service{}
			obj = r.service
		case "v1 ServiceAccount":
			r.serviceAccount = &corev1.ServiceAccount{}
			obj = r.serviceAccount
		case "policy/v1 PodDisruptionBudget":
			r.pdb = &policyv1.PodDisruptionBudget{}
			obj = r.pdb
		case "monitoring.coreos.com/v1 ServiceMonitor":
			r.serviceMonitor = &monitoringv1.ServiceMonitor{}
			obj = r.serviceMonitor
		default:
			// Secrets in particular: the chart only references existing ones.
			t.Fatalf("the chart rendered an unexpected %s %s", meta.APIVersion, meta.Kind)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			t.Fatalf("%s does not decode strictly: %v\n%s", meta.Kind, err, doc)
		}
	}
	if r.deployment == nil || r.service == nil {
		t.Fatalf("no Deployment or Service rendered:\n%s", out)
	}
	return r
}

// serveFlags are the flags of `clearance serve --help`, built from ../cmd/clearance
// (or CLEARANCE_BIN). `go run` caches the binary, so a warm run links nothing.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	var cmd *exec.Cmd
	if bin := os.Getenv("CLEARANCE_BIN"); bin != "" {
		cmd = exec.Command(bin, "serve", "--help")
	} else {
		cmd = exec.Command("go", "run", "./cmd/clearance", "serve", "--help")
		cmd.Dir = filepath.Join("..", "..")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("clearance serve --help: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["database-url"] || !flags["addr"] {
		t.Fatalf("could not read the flags of clearance serve --help:\n%s", out)
	}
	return flags
}

// envName is the variable root.go's applyEnv reads for a flag.
func envName(flag string) string {
	return "CLEARANCE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// secretFlags are read from Secrets only: the credentials, and the token
// issuer's settings, which operators keep with them.
var secretFlags = []string{"database-url", "database-read-url", "openfga-token", "qdrant-api-key", "openai-key", "issuer", "audience", "jwks-url", "tenant-claim"}

// credentialsInURL matches a URL with a password (postgres://u:p@host).
var credentialsInURL = regexp.MustCompile(`://[^/@\s]*:[^/@\s]*@`)

var valuesFiles = map[string][]string{
	"defaults": {"clearance/ci/default-values.yaml"},
	"all-on":   {"clearance/ci/full-values.yaml"},
	"single":   {"clearance/ci/single-replica-values.yaml"},
}

func TestChartLint(t *testing.T) {
	for name, files := range valuesFiles {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir}
			for _, f := range files {
				args = append(args, "--values", f)
			}
			if _, err := helm(t, args...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestChartRendersValidManifests(t *testing.T) {
	helmBin(t) // skip before building clearance when there is no helm
	flagOfEnv := map[string]string{}
	for f := range serveFlags(t) {
		flagOfEnv[envName(f)] = f
	}
	for name, files := range valuesFiles {
		t.Run(name, func(t *testing.T) {
			r := render(t, files...)
			d := r.deployment
			pod := d.Spec.Template.Spec
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(pod.Containers))
			}
			c := pod.Containers[0]

			// Probes: readiness on /readyz, liveness and startup on /healthz,
			// all on the named port the Service targets.
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"startup", c.StartupProbe, "/healthz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Fatalf("%s probe: none, or not HTTP", p.name)
				}
				if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port != intstr.FromString("http") {
					t.Errorf("%s probe: %s on %s, want %s on port http", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
				}
			}
			if len(c.Ports) != 1 || c.Ports[0].Name != "http" || c.Ports[0].ContainerPort != 8080 {
				t.Errorf("container ports %+v, want http 8080", c.Ports)
			}

			// Non-root, read-only root file system, no capabilities, seccomp.
			psc, sc := pod.SecurityContext, c.SecurityContext
			if psc == nil || sc == nil {
				t.Fatal("missing pod or container securityContext")
			}
			if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", psc)
			}
			if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod seccompProfile %+v, want RuntimeDefault", psc.SeccompProfile)
			}
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
				!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("container securityContext %+v: want non-root, read-only root fs, no privilege escalation, drop ALL", sc)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("the pod mounts a service account token; clearance never calls the Kubernetes API")
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
			}

			// Every CLEARANCE_* variable is a flag of serve; credentials come
			// from Secrets, never from a literal value.
			seen := map[string]bool{}
			for _, e := range c.Env {
				if seen[e.Name] {
					t.Errorf("env %s set twice", e.Name)
				}
				seen[e.Name] = true
				if !strings.HasPrefix(e.Name, "CLEARANCE_") {
					continue
				}
				flag, ok := flagOfEnv[e.Name]
				if !ok {
					t.Errorf("env %s: clearance serve has no flag it is the variable of", e.Name)
				}
				if slices.Contains(secretFlags, flag) && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("env %s is not read from a Secret", e.Name)
				}
				if credentialsInURL.MatchString(e.Value) {
					t.Errorf("env %s carries credentials inline", e.Name)
				}
				if e.Name == "CLEARANCE_DEV" {
					t.Error("the chart turns on --dev")
				}
			}
			for _, e := range []string{"CLEARANCE_DATABASE_URL", "CLEARANCE_ADDR", "CLEARANCE_DATA_DIR", "CLEARANCE_PUBLIC_URL"} {
				if !seen[e] {
					t.Errorf("env %s not set", e)
				}
			}
			for _, e := range c.Env {
				if e.Name == "CLEARANCE_ADDR" && e.Value != ":8080" {
					t.Errorf("CLEARANCE_ADDR=%q: the pod must listen on all interfaces at 8080", e.Value)
				}
			}

			// GOMAXPROCS follows the CPU request, so per-replica pools do not
			// follow the node's size.
			if e, ok := envs(c)["GOMAXPROCS"]; !ok || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil ||
				e.ValueFrom.ResourceFieldRef.Resource != "requests.cpu" {
				t.Errorf("GOMAXPROCS %+v, want the CPU request", e)
			}

			// The data dir and /tmp are writable volumes (the root fs is not).
			mounts := map[string]bool{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = true
			}
			if !mounts["/var/lib/clearance"] || !mounts["/tmp"] {
				t.Errorf("mounts %v: want the data dir and /tmp", mounts)
			}

			// The Service and the PDB select exactly the Deployment's pods.
			podLabels := d.Spec.Template.Labels
			if !selects(r.service.Spec.Selector, podLabels) || !selects(d.Spec.Selector.MatchLabels, podLabels) {
				t.Errorf("service selector %v / deployment selector %v do not select pod labels %v", r.service.Spec.Selector, d.Spec.Selector.MatchLabels, podLabels)
			}
			if len(r.service.Spec.Ports) != 1 || r.service.Spec.Ports[0].TargetPort != intstr.FromString("http") {
				t.Errorf("service ports %+v, want one targeting http", r.service.Spec.Ports)
			}
			if r.pdb != nil && (r.pdb.Spec.Selector == nil || !selects(r.pdb.Spec.Selector.MatchLabels, podLabels)) {
				t.Errorf("PDB selector %v does not select pod labels %v", r.pdb.Spec.Selector, podLabels)
			}
			if r.serviceMonitor != nil {
				if !selects(r.serviceMonitor.Spec.Selector.MatchLabels, r.service.Labels) {
					t.Errorf("ServiceMonitor selector %v does not select the service's labels %v", r.serviceMonitor.Spec.Selector.MatchLabels, r.service.Labels)
				}
				if ep := r.serviceMonitor.Spec.Endpoints; len(ep) != 1 || ep[0].Port != "http" || ep[0].Path != "/metrics" {
					t.Errorf("ServiceMonitor endpoints %+v, want http /metrics", ep)
				}
			}
		})
	}
}

// envs indexes a container's variables by name.
func envs(c corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

// selects reports whether every selector label is on labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestChartDefaultsAndFeatures(t *testing.T) {
	def := render(t, valuesFiles["defaults"]...)
	if def.serviceMonitor != nil {
		t.Error("a ServiceMonitor by default: it needs the Prometheus Operator's CRDs, so it must be opt-in")
	}
	if def.pdb == nil || def.pdb.Spec.MaxUnavailable == nil || def.pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("default PDB %+v, want maxUnavailable 1", def.pdb)
	}
	if *def.deployment.Spec.Replicas != 2 {
		t.Errorf("default replicas %d, want 2", *def.deployment.Spec.Replicas)
	}
	if s := def.deployment.Spec.Strategy.RollingUpdate; s == nil || s.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update %+v: want maxUnavailable 0", s)
	}

	full := render(t, valuesFiles["all-on"]...)
	if full.serviceMonitor == nil {
		t.Error("serviceMonitor.enabled rendered no ServiceMonitor")
	}
	if full.pdb == nil || full.pdb.Spec.MinAvailable == nil || full.pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB %+v, want minAvailable only", full.pdb)
	}
	c := full.deployment.Spec.Template.Spec.Containers[0]
	env := envs(c)
	for name, want := range map[string]string{
		"CLEARANCE_ENGINE": "openfga", "CLEARANCE_STORE": "qdrant", "CLEARANCE_EMBEDDER": "openai",
		"CLEARANCE_RATE_LIMIT": "5", "CLEARANCE_MAX_BODY_BYTES": "2097152", "CLEARANCE_OPENFGA_LISTUSERS_MAX_RESULTS": "0", "CLEARANCE_AUDIT_RETENTION": "2160h",
	} {
		if env[name].Value != want {
			t.Errorf("%s=%q, want %q", name, env[name].Value, want)
		}
	}
	for name, secret := range map[string]string{
		"CLEARANCE_DATABASE_URL": "clearance-db", "CLEARANCE_OPENFGA_TOKEN": "openfga", "CLEARANCE_QDRANT_API_KEY": "qdrant",
		"CLEARANCE_OPENAI_KEY": "embeddings", "CLEARANCE_JWKS_URL": "clearance-oidc", "CLEARANCE_ISSUER": "clearance-oidc",
	} {
		if e := env[name]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != secret {
			t.Errorf("%s not from Secret %s: %+v", name, secret, e)
		}
	}
	// The audit checkpoint key: one Secret for every replica, where the server reads it.
	var keyMount bool
	for _, m := range c.VolumeMounts {
		keyMount = keyMount || (m.MountPath == "/var/lib/clearance/audit/checkpoint.key" && m.ReadOnly)
	}
	if !keyMount {
		t.Errorf("no read-only checkpoint key mount in %+v", c.VolumeMounts)
	}

	single := render(t, valuesFiles["single"]...)
	if single.pdb != nil || single.serviceAccount != nil {
		t.Error("PDB or ServiceAccount rendered though turned off")
	}
	sc := single.deployment.Spec.Template.Spec.Containers[0]
	if sc.Lifecycle != nil {
		t.Error("preStop hook rendered with preStopSleepSeconds 0")
	}
	if e := envs(sc)["CLEARANCE_DATABASE_READ_URL"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
		e.ValueFrom.SecretKeyRef.Name != "clearance-db-replica" || e.ValueFrom.SecretKeyRef.Key != "database-read-url" {
		t.Errorf("CLEARANCE_DATABASE_READ_URL %+v, want Secret clearance-db-replica key database-read-url", e)
	}
	if _, ok := envs(def.deployment.Spec.Template.Spec.Containers[0])["CLEARANCE_DATABASE_READ_URL"]; ok {
		t.Error("a read replica by default")
	}
}

// TestChartRefuses: values the server would refuse, or that would put a secret
// in values or weaken the pod, fail at render (schema or template), naming why.
func TestChartRefuses(t *testing.T) {
	base := []string{"--set", "publicURL=https://clearance.example.com", "--set", "database.existingSecret=db"}
	for _, c := range []struct {
		name string
		set  []string
		want string
	}{
		{"no public URL", []string{"--set", "database.existingSecret=db"}, "publicURL is required"},
		{"no database", []string{"--set", "publicURL=https://c.example.com"}, "database.existingSecret is required"},
		{"database URL in values", append(base, "--set", "database.url=postgres://u:p@db/c"), "at '/database': additional properties 'url' not allowed"},
		{"secret flag in config", append(base, "--set", "config.database-url=postgres://u:p@db/c"), "at '/config/database-url': false schema"},
		{"openfga token in config", append(base, "--set", "config.openfga-token=t"), "at '/config/openfga-token': false schema"},
		{"dev issuer", append(base, "--set", "config.dev=true"), "at '/config/dev': false schema"},
		{"flag name not in flag form", append(base, "--set", "config.Rate_Limit=1"), "'Rate_Limit' does not match pattern"},
		{"embedded store", append(base, "--set", "store.kind=embedded"), "at '/store/kind': value must be one of 'pgvector', 'qdrant'"},
		{"openfga without url", append(base, "--set", "engine.kind=openfga"), "engine.kind openfga needs engine.openfga.url"},
		{"qdrant without url", append(base, "--set", "store.kind=qdrant"), "store.kind qdrant needs store.qdrant.url"},
		{"read replica URL in config", append(base, "--set", "config.database-read-url=postgres://r/c"), "at '/config/database-read-url': false schema"},
		{"read replica without pgvector", append(base, "--set", "database.readReplica.existingSecret=r", "--set", "store.kind=qdrant", "--set", "store.qdrant.url=http://q:6334"), "database.readReplica serves pgvector's searches"},
		{"retention without key", append(base, "--set", "audit.retention=720h"), "audit.retention needs audit.checkpointKey.existingSecret"},
		{"root", append(base, "--set", "podSecurityContext.runAsNonRoot=false"), "at '/podSecurityContext/runAsNonRoot': value must be true"},
		{"writable root fs", append(base, "--set", "securityContext.readOnlyRootFilesystem=false"), "at '/securityContext/readOnlyRootFilesystem': value must be true"},
		{"CLEARANCE_ env in extraEnv", append(base, "--set", "extraEnv[0].name=CLEARANCE_DATABASE_URL", "--set", "extraEnv[0].value=x"), "at '/extraEnv/0/name'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := helm(t, append([]string{"template", "rel", chartDir}, c.set...)...)
			var he *helmError
			if !errors.As(err, &he) {
				t.Fatalf("rendered (%v), want a refusal", err)
			}
			if !strings.Contains(he.Output, c.want) {
				t.Fatalf("refusal does not say %q:\n%s", c.want, he.Output)
			}
		})
	}
	if _, err := helm(t, append([]string{"template", "rel", chartDir}, base...)...); err != nil {
		t.Fatalf("the minimal values are refused: %v", err)
	}
}
