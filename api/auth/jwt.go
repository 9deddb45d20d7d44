package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/internal/strictjson"
)

// Defaults of JWTConfig.
const (
	DefaultTenantClaim        = "tenant"
	DefaultSkew               = 30 * time.Second
	DefaultMaxTokenBytes      = 8 << 10
	DefaultRefreshMinInterval = 10 * time.Second
)

// DefaultAlgorithms are the signature algorithms accepted unless configured:
// asymmetric only. "none" and HMAC are never accepted, even when configured,
// because a verifier holding only public keys must not treat one as a secret.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// JWTConfig configures a verifier of access tokens from one issuer.
type JWTConfig struct {
	// Issuer is the exact iss value required.
	Issuer string
	// Audiences: the token's aud must contain at least one of them (the server's
	// resource URL, RFC 8707).
	Audiences []string
	// JWKSURL is fetched, cached and refetched on an unknown kid. Either JWKSURL
	// or Keys is required.
	JWKSURL string
	// Keys is a fixed public key set (the dev issuer); no fetching.
	Keys jwk.Set
	// AuthMethod is recorded in the principal ("jwt" default, "dev").
	AuthMethod string
	// TenantClaim names the claim that carries the tenant (default "tenant").
	TenantClaim string
	// Algorithms is the allow-list (default DefaultAlgorithms).
	Algorithms []string
	// AllowAnyTyp accepts tokens whose typ header is not at+jwt (issuers that
	// omit it). Off by default: RFC 9068 typ stops ID tokens being replayed as
	// access tokens.
	AllowAnyTyp bool
	// Skew tolerated on exp, nbf and iat (default 30s).
	Skew time.Duration
	// MaxTokenBytes: longer tokens are refused unparsed (default 8 KiB).
	MaxTokenBytes int
	// RefreshMinInterval limits refetches of the JWKS on unknown key ids (default 10s).
	RefreshMinInterval time.Duration
	// HTTPClient fetches the JWKS (default: jwx's client with timeouts).
	HTTPClient *http.Client
	Now        func() time.Time
	Logger     *slog.Logger
}

// JWTVerifier verifies JWT access tokens and maps their claims to principals.
type JWTVerifier struct {
	cfg   JWTConfig
	algs  map[string]bool
	cache *jwk.Cache
	log   *slog.Logger

	mu          sync.Mutex
	lastRefresh time.Time
}

// NewJWTVerifier starts the JWKS cache (without waiting for the first fetch: a
// JWKS that is down makes requests fail with 503, not the server fail to start).
func NewJWTVerifier(ctx context.Context, cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("jwt verifier: issuer is required")
	}
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("jwt verifier: at least one audience is required")
	}
	if (cfg.JWKSURL == "") == (cfg.Keys == nil) {
		return nil, errors.New("jwt verifier: exactly one of a JWKS URL and a fixed key set is required")
	}
	if cfg.AuthMethod == "" {
		cfg.AuthMethod = "jwt"
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = DefaultTenantClaim
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	if cfg.Skew <= 0 {
		cfg.Skew = DefaultSkew
	}
	if cfg.MaxTokenBytes <= 0 {
		cfg.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if cfg.RefreshMinInterval <= 0 {
		cfg.RefreshMinInterval = DefaultRefreshMinInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v := &JWTVerifier{cfg: cfg, algs: map[string]bool{}, log: cfg.Logger}
	for _, a := range cfg.Algorithms {
		if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
			return nil, fmt.Errorf("jwt verifier: algorithm %s is never accepted", a)
		}
		if _, ok := jwa.LookupSignatureAlgorithm(a); !ok {
			return nil, fmt.Errorf("jwt verifier: unknown algorithm %s", a)
		}
		v.algs[a] = true
	}
	if cfg.JWKSURL != "" {
		cache, err := jwk.NewCache(ctx, httprc.NewClient())
		if err != nil {
			return nil, fmt.Errorf("jwt verifier: %w", err)
		}
		opts := []jwk.RegisterOption{jwk.WithWaitReady(false), jwk.WithMinInterval(time.Minute), jwk.WithMaxInterval(time.Hour)}
		if cfg.HTTPClient != nil {
			opts = append(opts, jwk.WithHTTPClient(cfg.HTTPClient))
		}
		if err := cache.Register(ctx, cfg.JWKSURL, opts...); err != nil {
			return nil, fmt.Errorf("jwt verifier: register %s: %w", cfg.JWKSURL, err)
		}
		v.cache = cache
	}
	return v, nil
}

// Issuer is the iss this verifier accepts.
func (v *JWTVerifier) Issuer() string { return v.cfg.Issuer }

// Close stops the JWKS cache.
func (v *JWTVerifier) Close() error {
	if v.cache == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return v.cache.Shutdown(ctx)
}

func unauthenticated(format string, args ...any) error {
	return fmt.Errorf("access token: "+format+": %w", append(args, clearance.ErrUnauthenticated)...)
}

// Verify checks the token and returns its principal and expiry.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (authz.Principal, time.Time, error) {
	if len(token) > v.cfg.MaxTokenBytes {
		return authz.Principal{}, time.Time{}, unauthenticated("%d bytes, over the limit of %d", len(token), v.cfg.MaxTokenBytes)
	}
	if strings.Count(token, ".") != 2 {
		return authz.Principal{}, time.Time{}, unauthenticated("not a compact JWS")
	}
	msg, err := jws.Parse([]byte(token))
	if err != nil || len(msg.Signatures()) != 1 {
		return authz.Principal{}, time.Time{}, unauthenticated("malformed: %v", err)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg, _ := hdr.Algorithm()
	if !v.algs[alg.String()] {
		return authz.Principal{}, time.Time{}, unauthenticated("algorithm %q not allowed", alg.String())
	}
	if typ, _ := hdr.Type(); !v.cfg.AllowAnyTyp && !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return authz.Principal{}, time.Time{}, unauthenticated("typ %q is not at+jwt", typ)
	}
	kid, _ := hdr.KeyID()
	key, err := v.key(ctx, kid)
	if err != nil {
		return authz.Principal{}, time.Time{}, err
	}
	if ka, ok := key.Algorithm(); ok && ka.String() != "" && ka.String() != alg.String() {
		return authz.Principal{}, time.Time{}, unauthenticated("key %q is for %s, token says %s", kid, ka, alg)
	}
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKey(alg, key),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAcceptableSkew(v.cfg.Skew),
		jwt.WithClock(jwt.ClockFunc(v.cfg.Now)),
		jwt.WithRequiredClaim("exp"),
		jwt.WithRequiredClaim("sub"),
	)
	if err != nil {
		return authz.Principal{}, time.Time{}, unauthenticated("%v", err)
	}
	aud, _ := tok.Audience()
	if !slices.ContainsFunc(v.cfg.Audiences, func(a string) bool { return slices.Contains(aud, a) }) {
		return authz.Principal{}, time.Time{}, unauthenticated("audience %q is not this resource", aud)
	}
	exp, _ := tok.Expiration()
	p, err := v.principal(msg.Payload())
	if err != nil {
		return authz.Principal{}, time.Time{}, err
	}
	return p, exp, nil
}

// key finds the verification key by kid: from the fixed set, or the cached JWKS,
// refetched (rate-limited) when the kid is unknown. A JWKS that cannot be
// fetched is ErrUnavailable: fail closed, with 503 rather than 401.
func (v *JWTVerifier) key(ctx context.Context, kid string) (jwk.Key, error) {
	if v.cache == nil {
		if k, ok := lookup(v.cfg.Keys, kid); ok {
			return k, nil
		}
		return nil, unauthenticated("unknown key id %q", kid)
	}
	set, err := v.cache.Lookup(ctx, v.cfg.JWKSURL)
	if err == nil {
		if k, ok := lookup(set, kid); ok {
			return k, nil
		}
	}
	// Unknown kid (a rotation) or no key set yet: refetch, at most once per interval.
	v.mu.Lock()
	now := v.cfg.Now()
	due := now.Sub(v.lastRefresh) >= v.cfg.RefreshMinInterval
	if due {
		v.lastRefresh = now
	}
	v.mu.Unlock()
	if !due {
		if set == nil {
			return nil, fmt.Errorf("jwks %s not available: %w", v.cfg.JWKSURL, clearance.ErrUnavailable)
		}
		return nil, unauthenticated("unknown key id %q", kid)
	}
	set, rerr := v.cache.Refresh(ctx, v.cfg.JWKSURL)
	if rerr != nil {
		v.log.Warn("jwt: jwks refresh failed", "url", v.cfg.JWKSURL, "err", rerr)
		return nil, fmt.Errorf("jwks %s: %v: %w", v.cfg.JWKSURL, rerr, clearance.ErrUnavailable)
	}
	if k, ok := lookup(set, kid); ok {
		return k, nil
	}
	return nil, unauthenticated("unknown key id %q", kid)
}

// lookup finds kid in set; a token without kid matches only a one-key set.
func lookup(set jwk.Set, kid string) (jwk.Key, bool) {
	if set == nil {
		return nil, false
	}
	if kid == "" {
		if set.Len() == 1 {
			return set.Key(0)
		}
		return nil, false
	}
	return set.LookupKeyID(kid)
}

// claims are the parts of the payload that make the principal.
type claims struct {
	Sub                  string            `json:"sub"`
	Scope                json.RawMessage   `json:"scope"`
	Scp                  []string          `json:"scp"`
	Act                  *actor            `json:"act"`
	AuthorizationDetails []json.RawMessage `json:"authorization_details"`
}

type actor struct {
	Sub string `json:"sub"`
	Act *actor `json:"act"`
}

type authorizationDetail struct {
	Type     string   `json:"type"`
	Actions  []string `json:"actions"`
	Projects []string `json:"projects"`
}

// TicketAccess is the authorization_details type clearance reads (RFC 9396).
const TicketAccess = "ticket_access"

// registeredClaims are the claim names whose case variants are refused: the
// JWT registered claims and every claim clearance reads.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "typ", "client_id",
	"scope", "scp", "act", "authorization_details"}

// strictClaims refuses a claims set that says one thing to one reader and
// another to the next: duplicate members and invalid UTF-8 anywhere (RFC 7519
// section 4 lets a verifier refuse duplicates; we must, because encoding/json
// let the last one win), and a case variant of a claim clearance knows,
// at the top level, in act and in authorization_details ("SUB" next to
// "sub", an extra "Scope"). Names are then read exactly.
func (v *JWTVerifier) strictClaims(payload []byte) error {
	if err := strictjson.Check(payload); err != nil {
		return unauthenticated("claims: %v", err)
	}
	var top map[string]jsontext.Value
	if err := strictjson.UnmarshalOpen(payload, &top); err != nil {
		return unauthenticated("claims: %v", err)
	}
	if err := caseVariants(top, "", append(registeredClaims, v.cfg.TenantClaim)...); err != nil {
		return err
	}
	for path, act := "act", top["act"]; act != nil && act.Kind() == '{'; path += ".act" {
		var m map[string]jsontext.Value
		if err := strictjson.UnmarshalOpen(act, &m); err != nil {
			return unauthenticated("claims: %s: %v", path, err)
		}
		if err := caseVariants(m, path+".", "sub", "act"); err != nil {
			return err
		}
		act = m["act"]
	}
	if raw := top["authorization_details"]; raw != nil && raw.Kind() == '[' {
		var list []jsontext.Value
		if err := strictjson.UnmarshalOpen(raw, &list); err != nil {
			return unauthenticated("claims: authorization_details: %v", err)
		}
		for i, d := range list {
			if d.Kind() != '{' {
				continue
			}
			var m map[string]jsontext.Value
			if err := strictjson.UnmarshalOpen(d, &m); err != nil {
				return unauthenticated("claims: authorization_details[%d]: %v", i, err)
			}
			if err := caseVariants(m, fmt.Sprintf("authorization_details[%d].", i), "type", "actions", "projects"); err != nil {
				return err
			}
		}
	}
	return nil
}

// caseVariants refuses a member whose name equals one of known but for case.
func caseVariants(m map[string]jsontext.Value, prefix string, known ...string) error {
	for name := range m {
		for _, k := range known {
			if name != k && strings.EqualFold(name, k) {
				return unauthenticated("claim %s%s is a case variant of %s", prefix, name, k)
			}
		}
	}
	return nil
}

func (v *JWTVerifier) principal(payload []byte) (authz.Principal, error) {
	if err := v.strictClaims(payload); err != nil {
		return authz.Principal{}, err
	}
	var c claims
	if err := strictjson.UnmarshalOpen(payload, &c); err != nil {
		return authz.Principal{}, unauthenticated("claims: %v", err)
	}
	var all map[string]jsontext.Value
	if err := strictjson.UnmarshalOpen(payload, &all); err != nil {
		return authz.Principal{}, unauthenticated("claims: %v", err)
	}
	if !ValidSubject(c.Sub) {
		return authz.Principal{}, unauthenticated("sub missing or not usable as an id")
	}
	var tenant string
	if raw, ok := all[v.cfg.TenantClaim]; !ok || strictjson.UnmarshalOpen(raw, &tenant) != nil || !ValidID(tenant) {
		return authz.Principal{}, unauthenticated("tenant claim %q missing or invalid", v.cfg.TenantClaim)
	}
	p := authz.Principal{Kind: authz.KindUser, Tenant: tenant, User: c.Sub, AuthMethod: v.cfg.AuthMethod}
	if c.Act != nil {
		if !ValidID(c.Act.Sub) {
			return authz.Principal{}, unauthenticated("act.sub missing or invalid")
		}
		p.Kind, p.Agent = authz.KindAgent, c.Act.Sub
		// Only the current actor counts; earlier ones are kept for the audit trail.
		for a := c.Act.Act; a != nil; a = a.Act {
			p.ActorChain = append(p.ActorChain, a.Sub)
		}
	}
	scopes, err := parseScopes(c.Scope, c.Scp)
	if err != nil {
		return authz.Principal{}, err
	}
	p.Scopes = scopes
	for i, raw := range c.AuthorizationDetails {
		var d authorizationDetail
		if err := strictjson.UnmarshalOpen(raw, &d); err != nil {
			return authz.Principal{}, unauthenticated("authorization_details[%d]: %v", i, err)
		}
		if d.Type != TicketAccess {
			continue
		}
		if p.Narrowing == nil {
			p.Narrowing = &authz.Narrowing{Projects: []string{}}
		}
		p.Narrowing.Projects = append(p.Narrowing.Projects, d.Projects...)
		p.Narrowing.Actions = append(p.Narrowing.Actions, d.Actions...)
	}
	if p.Narrowing != nil {
		slices.Sort(p.Narrowing.Projects)
		p.Narrowing.Projects = slices.Compact(p.Narrowing.Projects)
	}
	return p, nil
}

// parseScopes reads scope (space-separated string, RFC 8693/9068) or scp (a
// list, as Okta and Entra ID send).
func parseScopes(scope json.RawMessage, scp []string) ([]string, error) {
	out := slices.Clone(scp)
	if len(scope) > 0 && string(scope) != "null" {
		var s string
		if err := json.Unmarshal(scope, &s); err == nil {
			out = append(out, strings.Fields(s)...)
		} else {
			var list []string
			if err := json.Unmarshal(scope, &list); err != nil {
				return nil, unauthenticated("scope is neither a string nor a list")
			}
			out = append(out, list...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ValidID reports whether s is usable as a tenant, project, agent or service
// account id (SPEC 10): ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$.
func ValidID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		alnum := r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !alnum && (i == 0 || (r != '.' && r != '_' && r != '-')) {
			return false
		}
	}
	return true
}

// ValidSubject reports whether a token's sub can be a user id in the engine.
// Identity providers use '|', '@' and ':' in subjects (auth0|123); what would
// break a tuple or a delegation id ("<user>~<agent>") is refused.
func ValidSubject(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '#' || r == '~' {
			return false
		}
	}
	return true
}
