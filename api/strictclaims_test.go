package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/clearance-dev/clearance/authz"
)

// signRaw signs payload as it is: the claims tests need JSON a Go map cannot
// express (duplicate members, invalid UTF-8).
func (env *identityEnv) signRaw(t *testing.T, payload string) string {
	t.Helper()
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, "at+jwt")
	if kid, ok := env.key.KeyID(); ok {
		_ = hdr.Set(jws.KeyIDKey, kid)
	}
	out, err := jws.Sign([]byte(payload), jws.WithKey(jwa.RS256(), env.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestStrictClaims: a validly signed token whose claims say two things is
// refused (401), not read the way encoding/json reads it: case-insensitively
// with the last duplicate winning (issue 14, defect 6). Claims clearance does
// not know stay allowed, whatever their case.
func TestStrictClaims(t *testing.T) {
	env := newIdentityEnv(t, nil)
	base, err := json.Marshal(claimsFor("anne", "acme", "tickets:read"))
	if err != nil {
		t.Fatal(err)
	}
	with := func(extra string) string { return strings.TrimSuffix(string(base), "}") + "," + extra + "}" }
	whoami := func(payload string) (int, authz.Principal, string) {
		resp, body := hget(t, env.url+"/v1/whoami", "Authorization", "Bearer "+env.signRaw(t, payload))
		var p authz.Principal
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, p, string(body)
	}
	for _, c := range []struct{ name, payload string }{
		{"sub case variant", with(`"SUB":"bob"`)},
		{"sub duplicate", with(`"sub":"bob"`)},
		{"scope case variant", with(`"Scope":"tickets:read clearance:admin"`)},
		{"scp case variant", with(`"SCP":["clearance:admin"]`)},
		{"tenant case variant", with(`"Tenant":"globex"`)},
		{"tenant duplicate", with(`"tenant":"globex"`)},
		{"act case variant", with(`"ACT":{"sub":"copilot"}`)},
		{"act.sub case variant", with(`"act":{"sub":"copilot","Sub":"mailbot"}`)},
		{"act.sub duplicate", with(`"act":{"sub":"copilot","sub":"mailbot"}`)},
		{"authorization_details case variant", with(`"Authorization_Details":[{"type":"ticket_access","projects":["acme-web"]}]`)},
		{"authorization_details projects case variant", with(`"authorization_details":[{"type":"ticket_access","projects":["acme-web"],"Projects":["acme-hr"]}]`)},
		{"exp case variant", with(`"EXP":9999999999`)},
		{"trailing bytes", with(`"email":"x"`) + "\xff"},
		{"invalid UTF-8 in a claim", strings.Replace(string(base), `"sub":"anne"`, "\"sub\":\"anne\xff\"", 1)},
		{"invalid UTF-8 in an unknown claim", with("\"department\":\"sales\xff\"")},
	} {
		t.Run(c.name, func(t *testing.T) {
			if code, p, body := whoami(c.payload); code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401 (principal %+v): %s", code, p, body)
			}
		})
	}
	// Unknown claims, in any case, are not clearance's business.
	code, p, body := whoami(with(`"email":"anne@acme.example","Email":"x","department":"sales"`))
	if code != http.StatusOK || p.User != "anne" || p.HasScope(ScopeAdmin) {
		t.Fatalf("unknown claims: %d %+v %s", code, p, body)
	}
}
