package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/client"
	zcrypto "github.com/zitadel/oidc/v3/pkg/crypto"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/authz"
)

// opKey is the issuer's signing key as zitadel's op package publishes it.
type opKey struct {
	id  string
	key *ecdsa.PrivateKey
}

func (k opKey) ID() string                         { return k.id }
func (k opKey) Algorithm() jose.SignatureAlgorithm { return jose.ES256 }
func (k opKey) Use() string                        { return "sig" }
func (k opKey) Key() any                           { return &k.key.PublicKey }

type opKeys []op.Key

func (k opKeys) KeySet(context.Context) ([]op.Key, error) { return k, nil }

// newLocalIssuer is a real OAuth issuer built with github.com/zitadel/oidc/v3:
// discovery, the JWKS from op.Keys, and a token endpoint that issues RFC 9068
// access tokens for a subject (and, token-exchange style, an actor).
func newLocalIssuer(t *testing.T) *httptest.Server {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := opKey{id: "zitadel-1", key: raw}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: raw, KeyID: key.id}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(&oidc.DiscoveryConfiguration{
			Issuer: srv.URL, TokenEndpoint: srv.URL + "/oauth/token", JwksURI: srv.URL + "/keys",
			GrantTypesSupported: []oidc.GrantType{oidc.GrantTypeClientCredentials, oidc.GrantTypeTokenExchange},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) { op.Keys(w, r, opKeys{key}) })
	mux.HandleFunc("/oauth/token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c := oidc.NewAccessTokenClaims(srv.URL, r.Form.Get("subject"), []string{r.Form.Get("resource")},
			time.Now().Add(5*time.Minute), "jti-"+r.Form.Get("subject"), "test-client", 0)
		c.Scopes = strings.Fields(r.Form.Get("scope"))
		c.Claims = map[string]any{"tenant": r.Form.Get("tenant")}
		if a := r.Form.Get("actor"); a != "" {
			c.Actor = &oidc.ActorClaims{Subject: a}
		}
		tok, err := zcrypto.Sign(c, signer)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(oidc.AccessTokenResponse{AccessToken: tok, TokenType: oidc.BearerToken, ExpiresIn: 300})
	})
	return srv
}

// TestRealIssuerEndToEnd: discovery and JWKS through zitadel's client and op
// packages; the user's token grants an agent a project, the agent's
// token-exchange token then sees exactly that delegation.
func TestRealIssuerEndToEnd(t *testing.T) {
	ctx := context.Background()
	e := demoEngine(t)
	api := httptest.NewUnstartedServer(nil)
	resource := "http://" + api.Listener.Addr().String()
	idp := newLocalIssuer(t)
	disc, err := client.Discover(ctx, idp.URL, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewJWTVerifier(ctx, auth.JWTConfig{Issuer: disc.Issuer, Audiences: []string{resource}, JWKSURL: disc.JwksURI})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	api.Config.Handler = New(Config{PublicURL: resource, AuthorizationServers: []string{disc.Issuer}},
		Deps{Auth: &auth.Authenticator{Verifiers: []*auth.JWTVerifier{v}}, Engine: e, Areas: []Area{whoami{}}}).Handler()
	api.Start()
	defer api.Close()

	token := func(form url.Values) string {
		t.Helper()
		form.Set("resource", resource)
		resp, err := http.PostForm(disc.TokenEndpoint, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr oidc.AccessTokenResponse
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
			t.Fatalf("token endpoint: %d %v", resp.StatusCode, err)
		}
		return tr.AccessToken
	}
	user := token(url.Values{"subject": {"erin"}, "tenant": {"acme"}, "scope": {"tickets:read"}})
	resp, body := hsend(t, http.MethodPost, api.URL+"/v1/grants", `{"agent":"scribe","projects":["acme-web"]}`, "Authorization", "Bearer "+user, "Content-Type", "application/json")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("grant with the issuer's token: %d %s", resp.StatusCode, body)
	}
	agent := token(url.Values{"subject": {"erin"}, "actor": {"scribe"}, "tenant": {"acme"}, "scope": {"tickets:read"}})
	resp, body = hget(t, api.URL+"/v1/whoami", "Authorization", "Bearer "+agent)
	var p authz.Principal
	if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
		t.Fatalf("whoami: %d %s", resp.StatusCode, body)
	}
	if p.Kind != authz.KindAgent || p.User != "erin" || p.Agent != "scribe" || p.Tenant != "acme" || !p.HasScope("tickets:read") {
		t.Fatalf("agent principal %+v", p)
	}
	if !agentCanView(t, e, p.User, p.Agent, "acme-web") || agentCanView(t, e, p.User, p.Agent, "acme-api") {
		t.Fatal("the agent's access is not exactly the grant")
	}
	// The agent's token cannot widen its own grant.
	resp, body = hsend(t, http.MethodPost, api.URL+"/v1/grants", `{"agent":"scribe","projects":["acme-api"]}`, "Authorization", "Bearer "+agent, "Content-Type", "application/json")
	problem(t, resp, body, http.StatusForbidden)
	// A token for another resource is refused.
	other := url.Values{"subject": {"erin"}, "tenant": {"acme"}}
	other.Set("resource", "https://elsewhere.test")
	r2, err := http.PostForm(disc.TokenEndpoint, other)
	if err != nil {
		t.Fatal(err)
	}
	var tr oidc.AccessTokenResponse
	_ = json.NewDecoder(r2.Body).Decode(&tr)
	r2.Body.Close()
	resp, body = hget(t, api.URL+"/v1/whoami", "Authorization", "Bearer "+tr.AccessToken)
	problem(t, resp, body, http.StatusUnauthorized)
}
