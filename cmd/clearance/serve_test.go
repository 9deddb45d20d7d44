package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// TestServeFlagValidation: bad flag combinations are refused at start with an
// error naming the flags, before any backend is opened.
func TestServeFlagValidation(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{[]string{"--store", "pgvector"}, nil, []string{"--store pgvector needs --database-url"}},
		{[]string{"--store", "qdrant"}, nil, []string{"--store qdrant needs --qdrant-url"}},
		{[]string{"--store", "faiss"}, nil, []string{`--store "faiss": want embedded, pgvector or qdrant`}},
		{[]string{"--qdrant-url", "http://q:6334"}, nil, []string{"--qdrant-url/--qdrant-api-key need --store qdrant"}},
		{[]string{"--store", "qdrant", "--qdrant-url", "q:6334", "--qdrant-collection", "a b", "--qdrant-lexical-max-postings", "0"}, nil,
			[]string{`--qdrant-collection "a b"`, "--qdrant-lexical-max-postings 0: want 1 to 2000000"}},
		{[]string{"--dev", "--jwks-url", "https://idp.example/jwks"}, nil, []string{"--dev and --jwks-url exclude each other", "--jwks-url needs --issuer and --audience"}},
		{[]string{"--engine", "openfga"}, nil, []string{"--engine openfga needs --openfga-url"}},
		{[]string{"--engine", "embedded", "--openfga-url", "http://fga:8080"}, nil, []string{"need --engine openfga"}},
		{[]string{"--openfga-url", "http://fga:8080", "--engine-datastore", "sqlite"}, nil, []string{"--engine-datastore applies to the embedded engine only"}},
		{[]string{"--engine-datastore", "postgres"}, nil, []string{"--engine-datastore postgres needs --database-url"}},
		{[]string{"--engine", "spicedb"}, nil, []string{`--engine "spicedb": want embedded or openfga`}},
		{[]string{"--embedder", "openai"}, nil, []string{"--embedder openai needs --openai-url and --openai-model"}},
		{[]string{"--openai-model", "nomic-embed-text"}, nil, []string{"need --embedder openai"}},
		{[]string{"--embedding-dim", "0"}, nil, []string{"--embedding-dim 0: want 8..8192"}},
		{[]string{"--max-top-k", "0"}, nil, []string{"--max-top-k 0: want 1..1000"}},
		{[]string{"--decision-cache-size", "-1"}, nil, []string{"--decision-cache-size -1: want 0 (off) .. 100000000"}},
		{[]string{"--search-timeout", "1m", "--request-timeout", "30s"}, nil, []string{"--search-timeout (1m0s) must not exceed --request-timeout (30s)"}},
		{[]string{"--addr", "8080"}, nil, []string{`--addr "8080": want host:port`}},
		{[]string{"--max-concurrent-searches", "0"}, nil, []string{"--max-concurrent-searches 0: want at least 1"}},
		{[]string{"--search-queue-timeout", "10s"}, nil, []string{"--search-queue-timeout 10s: want positive and below --search-timeout (10s)"}},
		{[]string{"--max-concurrent-writes", "0"}, nil, []string{"--max-concurrent-writes 0: want at least 1"}},
		{[]string{"--write-queue", "-1"}, nil, []string{"--write-queue -1: must not be negative"}},
		{[]string{"--rate-limit", "-1"}, nil, []string{"--rate-limit -1: must not be negative"}},
		{[]string{"--engine-max-conns", "4", "--engine-max-idle-conns", "8"}, nil, []string{"--engine-max-conns 4 / --engine-max-idle-conns 8"}},
		{nil, map[string]string{"CLEARANCE_SEARCH_QUEUE": "-1"}, []string{"--search-queue -1: must not be negative"}},
		{[]string{"--database-url", "mysql://db/x"}, nil, []string{"--database-url: want postgres://"}},
		{[]string{"--database-read-url", "postgres://replica/x"}, nil, []string{"--database-read-url needs --store pgvector"}},
		{[]string{"--store", "pgvector", "--database-url", "postgres://db/x", "--database-read-url", "mysql://r/x"}, nil, []string{"--database-read-url: want postgres://"}},
		{[]string{"--store", "pgvector", "--database-url", "postgres://db/x", "--database-read-max-lag", "0s"}, nil, []string{"--database-read-max-lag 0s: want a positive duration"}},
		{[]string{"--store", "pgvector", "--database-url", "postgres://db/x", "--pgvector-plan", "ivfflat"}, nil, []string{`--pgvector-plan "ivfflat": want auto, exact or hnsw`}},
		{[]string{"--store", "pgvector", "--database-url", "postgres://db/x", "--pgvector-exact-threshold", "-5", "--pgvector-exact-workers", "65"}, nil, []string{"--pgvector-exact-threshold -5", "--pgvector-exact-workers 65: want 0 to 64"}},
		{nil, map[string]string{"CLEARANCE_STORE": "pgvector", "CLEARANCE_DATABASE_URL": "postgres://db/x", "CLEARANCE_PGVECTOR_PLAN": "approximate"}, []string{`--pgvector-plan "approximate"`}},
		{[]string{"--log-level", "loud"}, nil, []string{`--log-level "loud"`}},
		{[]string{"--openfga-url", "http://fga:8080", "--openfga-model-id", "01J", "--openfga-write-model"}, nil, []string{"--openfga-write-model and --openfga-model-id exclude each other"}},
		{[]string{"--openfga-changelog-window", "10ms"}, nil, []string{"--openfga-changelog-window 10ms: want at least 1s"}},
		{[]string{"--openfga-listusers-max-results", "-1"}, nil, []string{"--openfga-listusers-max-results and --openfga-listusers-deadline must not be negative"}},
		// Environment fallbacks are validated the same way.
		{nil, map[string]string{"CLEARANCE_STORE": "pgvector"}, []string{"--store pgvector needs --database-url"}},
		{nil, map[string]string{"CLEARANCE_OPENFGA_URL": "ftp://fga"}, []string{`--openfga-url "ftp://fga": want an http(s) URL`}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " ")+envName(c.env), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			root := newRootCommand()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(append([]string{"serve", "--data-dir", t.TempDir()}, c.args...))
			err := root.Execute()
			if err == nil {
				t.Fatal("serve started; want a validation error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func envName(env map[string]string) string {
	var b strings.Builder
	for k, v := range env {
		b.WriteString(" " + k + "=" + v)
	}
	return b.String()
}

// TestServeRefusesForeignModel: `serve` pointed at another application's store
// on a real OpenFGA server does not start, names what the store's model lacks
// and the flag that would replace it, and leaves the model as it was.
func TestServeRefusesForeignModel(t *testing.T) {
	srv := testenv.StartOpenFGA(t, "")
	post := func(path string, body []byte) map[string]any {
		resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %s %v", path, resp.Status, err)
		}
		return out
	}
	store := post("/stores", []byte(`{"name":"app"}`))["id"].(string)
	model, err := authz.ModelJSON("model\n  schema 1.1\ntype user\ntype document\n  relations\n    define viewer: [user]\n")
	if err != nil {
		t.Fatal(err)
	}
	foreign := post("/stores/"+store+"/authorization-models", model)["authorization_model_id"].(string)
	_, err = runCLI(t, "serve", "--data-dir", t.TempDir(), "--addr", testenv.FreeAddr(t), "--dev",
		"--openfga-url", srv.URL, "--openfga-store-id", store)
	if err == nil {
		t.Fatal("serve started on a foreign model")
	}
	for _, want := range []string{"type tenant", "type ticket", "condition not_expired", "--openfga-write-model"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
	resp, err := http.Get(srv.URL + "/stores/" + store + "/authorization-models?page_size=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var latest struct {
		Models []struct{ ID string } `json:"authorization_models"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&latest); err != nil || len(latest.Models) == 0 || latest.Models[0].ID != foreign {
		t.Errorf("the store's latest model changed: %+v %v, want %s", latest, err, foreign)
	}
}

// TestUnknownEnvironmentIsNamed: a CLEARANCE_* variable that fills no flag of
// any command (a misspelt Helm values key) is named on stderr, without its
// value, and the command still runs; a known one is not named.
func TestUnknownEnvironmentIsNamed(t *testing.T) {
	t.Setenv("CLEARANCE_SEARCH_QUEUEE", "secret-value")
	t.Setenv("CLEARANCE_RATE_LIMIT", "5")
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	got := errOut.String()
	if !strings.Contains(got, "CLEARANCE_SEARCH_QUEUEE") || strings.Contains(got, "secret-value") {
		t.Errorf("stderr %q: want the misspelt variable named without its value", got)
	}
	if strings.Contains(got, "CLEARANCE_RATE_LIMIT") {
		t.Errorf("stderr %q names a variable that fills --rate-limit", got)
	}
}
