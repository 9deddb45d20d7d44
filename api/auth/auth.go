// Package auth verifies the credentials of clearance's API and turns them into
// principals: JWT access tokens from one or more issuers (JWKS fetched and
// cached, or the dev issuer's fixed key), service-account API keys (salted
// hashes in the data dir or Postgres), and the dev issuer that mints tokens for
// `serve --dev` and `clearance token`.
package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// Authenticator dispatches a bearer credential: clr_ keys to Keys, JWTs to the
// verifier of their (unverified, then verified) issuer.
type Authenticator struct {
	Verifiers []*JWTVerifier
	Keys      *Keys // nil: API keys are refused
	// MaxCredentialBytes refuses longer credentials unparsed (default 8 KiB).
	MaxCredentialBytes int
}

// Authenticate implements api.Authenticator.
func (a *Authenticator) Authenticate(ctx context.Context, cred string) (authz.Principal, time.Time, error) {
	limit := a.MaxCredentialBytes
	if limit <= 0 {
		limit = DefaultMaxTokenBytes
	}
	if len(cred) > limit {
		return authz.Principal{}, time.Time{}, unauthenticated("credential of %d bytes is over the limit", len(cred))
	}
	if strings.HasPrefix(cred, KeyPrefix) {
		if a.Keys == nil {
			return authz.Principal{}, time.Time{}, fmt.Errorf("api keys are not enabled: %w", clearance.ErrUnauthenticated)
		}
		p, err := a.Keys.Authenticate(ctx, cred)
		return p, time.Time{}, err
	}
	iss := peekIssuer(cred)
	for _, v := range a.Verifiers {
		if v.Issuer() == iss {
			return v.Verify(ctx, cred)
		}
	}
	return authz.Principal{}, time.Time{}, unauthenticated("no trusted issuer %q", iss)
}

// peekIssuer reads iss without verifying anything, only to pick the verifier
// (which then checks iss again, under the signature).
func peekIssuer(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	_ = json.Unmarshal(b, &c)
	return c.Iss
}
