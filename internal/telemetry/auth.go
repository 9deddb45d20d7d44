package telemetry

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// Authenticator is a bearer-credential verifier (api.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (authz.Principal, time.Time, error)
}

type authenticator struct {
	inner Authenticator
	t     *Telemetry
}

// Authenticator wraps a verifier: span auth.Verify, its latency, and every
// refusal counted by reason (clearance_auth_failures_total).
func (m *Telemetry) Authenticator(a Authenticator) Authenticator {
	return &authenticator{inner: a, t: m}
}

func (a *authenticator) Authenticate(ctx context.Context, cred string) (p authz.Principal, exp time.Time, err error) {
	start := time.Now()
	ctx, span := a.t.start(ctx, "auth.Verify")
	p, exp, err = a.inner.Authenticate(ctx, cred)
	a.t.authDuration.Observe(seconds(start))
	if err != nil {
		a.t.authFailures.WithLabelValues(FailureReason(cred, err)).Inc()
	}
	end(span, err)
	return p, exp, err
}

// Refusal reasons (label "reason" of clearance_auth_failures_total).
var reasons = []struct{ reason, marker string }{
	// Order matters: the first marker found in the message wins.
	{"too_large", "over the limit"},
	{"unknown_issuer", "no trusted issuer"},
	{"malformed", "not a compact JWS"},
	{"malformed", "malformed"},
	{"algorithm", "algorithm"},
	{"typ", "typ "},
	{"unknown_key", "unknown key id"},
	{"unknown_key", "is for"},
	{"expired", `"exp" not satisfied`},
	{"not_yet_valid", `"nbf" not satisfied`},
	{"not_yet_valid", `"iat" not satisfied`},
	{"signature", "verify"},
	{"audience", "audience"},
	{"issuer", `"iss" not satisfied`},
	{"claims", "claim"},
	{"claims", "sub missing"},
	{"claims", "tenant"},
	{"claims", "act.sub"},
	{"claims", "authorization_details"},
	{"claims", "scope"},
}

// FailureReason classifies a refused credential for metrics. The verifier's
// messages are the only place the reason exists (the JWT library formats its
// own); unknown messages count as "other", never as a new label value.
func FailureReason(cred string, err error) string {
	if errors.Is(err, clearance.ErrUnavailable) {
		return "unavailable" // the JWKS or the key store could not answer
	}
	if strings.HasPrefix(cred, "clr_") {
		return "api_key"
	}
	msg := err.Error()
	for _, r := range reasons {
		if strings.Contains(msg, r.marker) {
			return r.reason
		}
	}
	return "other"
}
