package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestMethodNotAllowed: a known path with a method it does not serve answers
// 405 with Allow, in /v1 (behind authentication), on the /audit page and at
// the top level; an unknown path answers a problem+json 404. echo's group
// catch-all used to turn every wrong method under a group into 404.
func TestMethodNotAllowed(t *testing.T) {
	s := fullServer(t, Config{}, Deps{Auth: staticAuth(testPrincipals)})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	bearer := []string{"Authorization", "Bearer anne"}
	for _, c := range []struct {
		method, path, allow string
		hdr                 []string
	}{
		{http.MethodDelete, "/v1/search", "POST", bearer},
		{http.MethodGet, "/v1/search", "POST", bearer},
		{http.MethodPut, "/v1/tickets/WEB-1", "DELETE, GET", bearer},
		{http.MethodGet, "/v1/relationships", "POST", bearer},
		{http.MethodPost, "/audit", "GET", nil},
		{http.MethodDelete, "/audit/login", "GET, POST", nil},
		{http.MethodDelete, "/healthz", "GET", nil},
	} {
		resp, body := hsend(t, c.method, srv.URL+c.path, "", c.hdr...)
		p := problem(t, resp, body, http.StatusMethodNotAllowed)
		if got := resp.Header.Get("Allow"); got != c.allow && got != "OPTIONS, "+c.allow {
			t.Errorf("%s %s: Allow %q, want %q (%+v)", c.method, c.path, got, c.allow, p)
		}
	}
	for _, c := range []struct {
		path string
		hdr  []string
	}{
		{"/nope", nil}, {"/v1/nope", bearer}, {"/v1/tickets/WEB-1/more", bearer}, {"/v1/tickets/", bearer}, {"/audit/nope", nil},
	} {
		resp, body := hget(t, srv.URL+c.path, c.hdr...)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %d (Allow %q), want 404", c.path, resp.StatusCode, resp.Header.Get("Allow"))
		}
		problem(t, resp, body, http.StatusNotFound)
		if a := resp.Header.Get("Allow"); a != "" {
			t.Errorf("GET %s: 404 with Allow %q", c.path, a)
		}
	}
	// Unauthenticated requests under /v1 learn nothing, not even the methods.
	resp, body := hsend(t, http.MethodDelete, srv.URL+"/v1/search", "")
	problem(t, resp, body, http.StatusUnauthorized)
}

// TestAPIKeyHeaderOnlyTakesKeys: X-API-Key carries clr_ keys only; a JWT sent
// there is refused (401) even though it is valid as a bearer token.
func TestAPIKeyHeaderOnlyTakesKeys(t *testing.T) {
	env := newIdentityEnv(t, nil)
	tok := env.token(t, claimsFor("anne", "acme", "tickets:read"))
	if resp, body := hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("bearer: %d %s", resp.StatusCode, body)
	}
	resp, body := hget(t, env.url+"/v1/whoami", "X-API-Key", tok)
	problem(t, resp, body, http.StatusUnauthorized)
}

func TestRouteMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"/v1/search", "/v1/search", true},
		{"/v1/search", "/v1/searchx", false},
		{"/v1/tickets/:id", "/v1/tickets/WEB-1", true},
		{"/v1/tickets/:id", "/v1/tickets/", false},
		{"/v1/tickets/:id", "/v1/tickets/a/b", true}, // a leaf param takes the rest, like echo
		{"/v1/tenants/:tenant/api-keys", "/v1/tenants/acme/api-keys", true},
		{"/v1/tenants/:tenant/api-keys", "/v1/tenants//api-keys", false},
		{"/v1/tenants/:tenant/api-keys/:id", "/v1/tenants/acme/api-keys", false},
		{"/static/*", "/static/a/b", true},
	} {
		if got := routeMatches(c.pattern, c.path); got != c.want {
			t.Errorf("routeMatches(%q, %q) = %v", c.pattern, c.path, got)
		}
	}
}
