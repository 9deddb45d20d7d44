package openfga_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/openfga"
)

// foreignModel is another application's model: no type clearance needs.
const foreignModel = `model
  schema 1.1
type user
type document
  relations
    define viewer: [user]
`

// api calls the server's HTTP API the way another application would.
func api(t *testing.T, base, method, path string, body any, out any) {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		if raw, ok := body.([]byte); ok {
			buf.Write(raw)
		} else if err := json.NewEncoder(&buf).Encode(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, base+path, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

// appStore creates a store named name holding dsl as its only model, as
// another application would, and returns the store and model ids.
func appStore(t *testing.T, base, name, dsl string) (store, model string) {
	t.Helper()
	var s struct{ ID string }
	api(t, base, http.MethodPost, "/stores", map[string]string{"name": name}, &s)
	raw, err := authz.ModelJSON(dsl)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		ID string `json:"authorization_model_id"`
	}
	api(t, base, http.MethodPost, "/stores/"+s.ID+"/authorization-models", raw, &m)
	return s.ID, m.ID
}

func latestModel(t *testing.T, base, store string) string {
	t.Helper()
	var out struct {
		Models []struct{ ID string } `json:"authorization_models"`
	}
	api(t, base, http.MethodGet, "/stores/"+store+"/authorization-models?page_size=1", nil, &out)
	if len(out.Models) == 0 {
		return ""
	}
	return out.Models[0].ID
}

func open(cfg openfga.Config) (*openfga.Engine, error) {
	cfg.APIToken = token
	return openfga.New(context.Background(), cfg)
}

// TestForeignModelRefused: pointed at another application's store, clearance
// neither starts nor touches its model, and says what is missing; pinned to the
// foreign model, the same; with WriteModel it writes its own.
func TestForeignModelRefused(t *testing.T) {
	srv := startServer(t)
	store, foreign := appStore(t, srv.URL, "app", foreignModel)
	for _, tc := range []struct {
		name string
		cfg  openfga.Config
	}{
		{"latest", openfga.Config{URL: srv.URL, StoreID: store}},
		{"pinned", openfga.Config{URL: srv.URL, StoreID: store, ModelID: foreign}},
	} {
		_, err := open(tc.cfg)
		if !errors.Is(err, authz.ErrModelMismatch) {
			t.Fatalf("%s: err = %v, want a model mismatch", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
		for _, want := range []string{"type tenant", "type project", "type ticket", "type delegation", "condition not_expired"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error does not name %q: %v", tc.name, want, err)
			}
		}
		if got := latestModel(t, srv.URL, store); got != foreign {
			t.Fatalf("%s: the store's latest model is %s, want the application's %s", tc.name, got, foreign)
		}
	}
	// One relation missing is named as such.
	partial := strings.Replace(authz.ModelDSL, "    define agent_can_view: can_view and delegated from project\n", "", 1)
	partialStore, _ := appStore(t, srv.URL, "partial", partial)
	_, err := open(openfga.Config{URL: srv.URL, StoreID: partialStore})
	if err == nil || !strings.Contains(err.Error(), "relation ticket#agent_can_view") {
		t.Errorf("partial model: err = %v, want it to name ticket#agent_can_view", err)
	}
	if _, err := open(openfga.Config{URL: srv.URL, StoreID: store, ModelID: foreign, WriteModel: true}); err == nil {
		t.Error("a pinned model with the write flag started")
	}
	e, err := open(openfga.Config{URL: srv.URL, StoreID: store, WriteModel: true})
	if err != nil {
		t.Fatalf("with WriteModel: %v", err)
	}
	if got := latestModel(t, srv.URL, store); got != e.ModelID() || got == foreign {
		t.Errorf("with WriteModel: latest model %s, engine uses %s", got, e.ModelID())
	}
}

// TestOwnStoreModelUpdated: a store clearance created gets its new model
// written; a store it uses whose latest model is a superset of clearance's is
// used as it is, not replaced.
func TestOwnStoreModelUpdated(t *testing.T) {
	srv := startServer(t)
	e1, err := open(openfga.Config{URL: srv.URL, StoreName: "own"})
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(authz.ModelDSL, "type agent\n", "type agent\n\ntype extra\n", 1)
	e2, err := open(openfga.Config{URL: srv.URL, StoreName: "own", ModelDSL: changed})
	if err != nil {
		t.Fatal(err)
	}
	if e2.StoreID() != e1.StoreID() || e2.ModelID() == e1.ModelID() || latestModel(t, srv.URL, e1.StoreID()) != e2.ModelID() {
		t.Errorf("own store: model %s then %s, latest %s", e1.ModelID(), e2.ModelID(), latestModel(t, srv.URL, e1.StoreID()))
	}
	// Another application's model with everything clearance needs (and its own
	// type, without clearance's marker): used, never replaced.
	superset := strings.Replace(authz.ModelDSL, "type "+authz.ModelMarkerType+"\n", "type document\n", 1)
	store, model := appStore(t, srv.URL, "shared", superset)
	e3, err := open(openfga.Config{URL: srv.URL, StoreID: store})
	if err != nil {
		t.Fatalf("superset model: %v", err)
	}
	if e3.ModelID() != model || latestModel(t, srv.URL, store) != model {
		t.Errorf("superset model replaced: engine %s, latest %s, want %s", e3.ModelID(), latestModel(t, srv.URL, store), model)
	}
	if err := e3.Write(context.Background(), []authz.Tuple{{User: "user:u", Relation: "viewer", Object: "ticket:t"}}, nil); err != nil {
		t.Errorf("write through the superset model: %v", err)
	}
}
