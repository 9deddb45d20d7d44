package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
)

const (
	testIssuer   = "https://idp.test"
	testResource = "https://clearance.test"
)

// jwksServer is a real HTTP JWKS endpoint whose keys (and health) tests change.
type jwksServer struct {
	*httptest.Server
	mu   sync.Mutex
	keys []jwk.Key
	down bool
}

func newJWKSServer(t *testing.T) *jwksServer {
	j := &jwksServer{}
	j.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		set := jwk.NewSet()
		for _, k := range j.keys {
			pub, _ := k.PublicKey()
			_ = set.AddKey(pub)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(j.Close)
	return j
}

func (j *jwksServer) add(k jwk.Key) {
	j.mu.Lock()
	j.keys = append(j.keys, k)
	j.mu.Unlock()
}

func (j *jwksServer) setDown(d bool) {
	j.mu.Lock()
	j.down = d
	j.mu.Unlock()
}

func rsaKey(t *testing.T, kid string) jwk.Key {
	t.Helper()
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k := importKey(t, raw, kid)
	_ = k.Set(jwk.AlgorithmKey, jwa.RS256())
	return k
}

func ecKey(t *testing.T, kid string) jwk.Key {
	t.Helper()
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return importKey(t, raw, kid)
}

func importKey(t *testing.T, raw any, kid string) jwk.Key {
	t.Helper()
	k, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, kid)
	return k
}

// claimsFor are valid claims for sub in tenant; tests edit them.
func claimsFor(sub, tenant string, scopes ...string) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": testIssuer, "aud": []string{testResource}, "sub": sub, "tenant": tenant,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if len(scopes) > 0 {
		c["scope"] = strings.Join(scopes, " ")
	}
	return c
}

func sign(t *testing.T, k jwk.Key, alg jwa.SignatureAlgorithm, typ string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	if typ != "" {
		_ = hdr.Set(jws.TypeKey, typ)
	}
	if kid, ok := k.KeyID(); ok {
		_ = hdr.Set(jws.KeyIDKey, kid)
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, k, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// identityEnv is a full server with a JWT verifier against a real JWKS server,
// file-backed API keys and (when engine is set) the embedded engine.
type identityEnv struct {
	url  string
	jwks *jwksServer
	key  jwk.Key
	keys *auth.Keys
}

// whoami echoes the verified principal (test-only area).
type whoami struct{}

func (whoami) Register(g *echo.Group, principal func(echo.Context) (authz.Principal, error)) {
	g.GET("/whoami", func(c echo.Context) error {
		p, err := principal(c)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, p)
	})
}

func newIdentityEnv(t *testing.T, engine authz.Engine) *identityEnv {
	t.Helper()
	return newIdentityEnvWith(t, engine, nil)
}

// newIdentityEnvWith also serves the search API and MCP over planner (nil: no
// search side).
func newIdentityEnvWith(t *testing.T, engine authz.Engine, planner *filter.Planner) *identityEnv {
	t.Helper()
	env := &identityEnv{jwks: newJWKSServer(t), key: rsaKey(t, "k1")}
	env.jwks.add(env.key)
	v, err := auth.NewJWTVerifier(context.Background(), auth.JWTConfig{
		Issuer: testIssuer, Audiences: []string{testResource}, JWKSURL: env.jwks.URL,
		RefreshMinInterval: time.Nanosecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	fk, err := auth.OpenFileKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env.keys = auth.NewKeys(fk, nil)
	areas := []Area{whoami{}}
	if planner != nil {
		areas = append(areas, &SearchAPI{Planner: planner})
	}
	s := New(Config{PublicURL: testResource}, Deps{
		Auth:    &auth.Authenticator{Verifiers: []*auth.JWTVerifier{v}, Keys: env.keys},
		Engine:  engine,
		APIKeys: env.keys,
		Areas:   areas,
	})
	if planner != nil {
		(&MCP{Planner: planner, Version: "test"}).Mount(s)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	env.url = srv.URL
	return env
}

func (env *identityEnv) token(t *testing.T, claims map[string]any) string {
	return sign(t, env.key, jwa.RS256(), "at+jwt", claims)
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestTokenNegatives: every bad credential is 401 (503 for a JWKS outage) with
// the same problem body and nothing about why.
func TestTokenNegatives(t *testing.T) {
	env := newIdentityEnv(t, nil)
	good := env.token(t, claimsFor("anne", "acme", "tickets:read"))
	parts := strings.Split(good, ".")
	pubJSON, _ := json.Marshal(func() jwk.Key { k, _ := env.key.PublicKey(); return k }())
	hmacKey, err := jwk.Import(pubJSON)
	if err != nil {
		t.Fatal(err)
	}
	_ = hmacKey.Set(jwk.KeyIDKey, "k1")
	edit := func(f func(map[string]any)) string {
		c := claimsFor("anne", "acme", "tickets:read")
		f(c)
		return env.token(t, c)
	}
	stranger := rsaKey(t, "ghost")
	es := ecKey(t, "k1")
	cases := []struct {
		name   string
		header []string
	}{
		{"missing header", nil},
		{"wrong scheme", []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("anne:pw"))}},
		{"empty bearer", []string{"Authorization", "Bearer "}},
		{"garbage", []string{"Authorization", "Bearer not-a-token"}},
		{"truncated", []string{"Authorization", "Bearer " + good[:len(good)-12]}},
		{"tampered payload", []string{"Authorization", "Bearer " + parts[0] + "." + b64(claimsFor("anne", "globex", "tickets:read", "clearance:admin")) + "." + parts[2]}},
		{"alg none", []string{"Authorization", "Bearer " + b64(map[string]string{"alg": "none", "typ": "at+jwt", "kid": "k1"}) + "." + parts[1] + "."}},
		{"HS256 with the public key", []string{"Authorization", "Bearer " + sign(t, hmacKey, jwa.HS256(), "at+jwt", claimsFor("anne", "acme"))}},
		{"ES256 with a look-alike kid", []string{"Authorization", "Bearer " + sign(t, es, jwa.ES256(), "at+jwt", claimsFor("anne", "acme"))}},
		{"unknown kid", []string{"Authorization", "Bearer " + sign(t, stranger, jwa.RS256(), "at+jwt", claimsFor("anne", "acme"))}},
		{"expired", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })}},
		{"not yet valid", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() })}},
		{"issued in the future", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() })}},
		{"no exp", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { delete(c, "exp") })}},
		{"wrong issuer", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { c["iss"] = "https://evil.test" })}},
		{"wrong audience", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { c["aud"] = "https://other.test" })}},
		{"missing sub", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { delete(c, "sub") })}},
		{"sub with a tilde", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { c["sub"] = "anne~copilot" })}},
		{"missing tenant", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { delete(c, "tenant") })}},
		{"tenant not a string", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { c["tenant"] = []string{"acme", "globex"} })}},
		{"act without sub", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { c["act"] = map[string]any{"iss": "x"} })}},
		{"id token typ", []string{"Authorization", "Bearer " + sign(t, env.key, jwa.RS256(), "JWT", claimsFor("anne", "acme"))}},
		{"oversized", []string{"Authorization", "Bearer " + edit(func(c map[string]any) { c["pad"] = strings.Repeat("x", 9000) })}},
		{"both headers", []string{"Authorization", "Bearer " + good, "X-API-Key", "clr_0000000000000000_" + strings.Repeat("0", 64)}},
		{"api key wrong shape", []string{"Authorization", "Bearer clr_short"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := hget(t, env.url+"/v1/whoami", tc.header...)
			p := problem(t, resp, body, http.StatusUnauthorized)
			if p.Detail != "missing or invalid credential" || strings.Contains(string(body), "anne") {
				t.Fatalf("body says too much: %s", body)
			}
			w := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(w, `Bearer resource_metadata="`+testResource+`/.well-known/oauth-protected-resource"`) {
				t.Fatalf("WWW-Authenticate %q", w)
			}
			if sent := tc.header != nil; sent != strings.Contains(w, `error="invalid_token"`) {
				t.Fatalf("invalid_token iff a credential was sent: %q", w)
			}
		})
	}
	// The good token passes (so the negatives above failed for their reason).
	resp, body := hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+good)
	if resp.StatusCode != 200 {
		t.Fatalf("good token: %d %s", resp.StatusCode, body)
	}
}

// TestTokenClaimsToPrincipal: user, agent (act.sub, nested act kept only for the
// audit chain), scopes and authorization_details narrowing.
func TestTokenClaimsToPrincipal(t *testing.T) {
	env := newIdentityEnv(t, nil)
	whoamiAs := func(claims map[string]any) authz.Principal {
		t.Helper()
		resp, body := hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+env.token(t, claims))
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var p authz.Principal
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := whoamiAs(claimsFor("anne", "acme", "tickets:read", "clearance:audit"))
	if p.Kind != authz.KindUser || p.User != "anne" || p.Tenant != "acme" || !p.HasScope("tickets:read") || !p.HasScope("clearance:audit") || p.AuthMethod != "jwt" || p.Narrowing != nil {
		t.Fatalf("user principal %+v", p)
	}
	if p.ContextualTuples() != nil || p.ViewRelation() != authz.RelationCanView {
		t.Fatalf("user principal wiring %+v", p)
	}
	c := claimsFor("anne", "acme", "tickets:read")
	c["act"] = map[string]any{"sub": "copilot", "act": map[string]any{"sub": "orchestrator", "act": map[string]any{"sub": "scheduler"}}}
	c["authorization_details"] = []any{
		map[string]any{"type": "ticket_access", "actions": []string{"read"}, "projects": []string{"acme-web", "acme-api"}},
		map[string]any{"type": "payment_initiation", "projects": []string{"acme-secret"}},
	}
	p = whoamiAs(c)
	if p.Kind != authz.KindAgent || p.User != "anne" || p.Agent != "copilot" || strings.Join(p.ActorChain, ",") != "orchestrator,scheduler" {
		t.Fatalf("agent principal %+v", p)
	}
	ct := p.ContextualTuples()
	if len(ct) != 1 || ct[0] != (authz.Tuple{User: "user:anne", Relation: "active", Object: "delegation:anne~copilot"}) || p.ViewRelation() != authz.RelationAgentCanView {
		t.Fatalf("agent wiring %+v", ct)
	}
	if p.Narrowing == nil || strings.Join(p.Narrowing.Projects, ",") != "acme-api,acme-web" || strings.Join(p.Narrowing.Actions, ",") != "read" {
		t.Fatalf("narrowing %+v", p.Narrowing)
	}
	// scp as a list (Okta, Entra ID).
	c = claimsFor("anne", "acme")
	c["scp"] = []string{"tickets:read"}
	if p := whoamiAs(c); !p.HasScope("tickets:read") {
		t.Fatalf("scp: %+v", p)
	}
	// ticket_access with no projects narrows to nothing.
	c = claimsFor("anne", "acme")
	c["authorization_details"] = []any{map[string]any{"type": "ticket_access", "actions": []string{"read"}}}
	if p := whoamiAs(c); p.Narrowing == nil || len(p.Narrowing.Projects) != 0 {
		t.Fatalf("empty narrowing: %+v", p.Narrowing)
	}
}

// TestJWKSRotationAndOutage: a key that appears in the JWKS is picked up on its
// first use; a JWKS that cannot be fetched fails closed with 503.
func TestJWKSRotationAndOutage(t *testing.T) {
	env := newIdentityEnv(t, nil)
	if resp, body := hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+env.token(t, claimsFor("anne", "acme"))); resp.StatusCode != 200 {
		t.Fatalf("first key: %d %s", resp.StatusCode, body)
	}
	next := ecKey(t, "k2")
	_ = next.Set(jwk.AlgorithmKey, jwa.ES256())
	tok := sign(t, next, jwa.ES256(), "at+jwt", claimsFor("anne", "acme"))
	resp, body := hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+tok)
	problem(t, resp, body, 401)
	env.jwks.add(next)
	if resp, body := hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+tok); resp.StatusCode != 200 {
		t.Fatalf("rotated key: %d %s", resp.StatusCode, body)
	}
	// JWKS down: a kid that needs a fetch cannot be verified: 503, not 401, not 200.
	env.jwks.setDown(true)
	third := rsaKey(t, "k3")
	resp, body = hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+sign(t, third, jwa.RS256(), "at+jwt", claimsFor("anne", "acme")))
	problem(t, resp, body, 503)

	// A server whose JWKS was never reachable: every token is 503.
	down := newJWKSServer(t)
	down.setDown(true)
	v, err := auth.NewJWTVerifier(context.Background(), auth.JWTConfig{Issuer: testIssuer, Audiences: []string{testResource}, JWKSURL: down.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	srv := httptest.NewServer(New(Config{}, Deps{Auth: &auth.Authenticator{Verifiers: []*auth.JWTVerifier{v}}, Areas: []Area{whoami{}}}).Handler())
	defer srv.Close()
	resp, body = hget(t, srv.URL+"/v1/whoami", "Authorization", "Bearer "+env.token(t, claimsFor("anne", "acme")))
	problem(t, resp, body, 503)
}
