package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// DevIssuer is the iss of dev tokens. Dev tokens are accepted only by a server
// started with --dev.
const DevIssuer = "clearance-dev"

// devKeyFile holds the dev issuer's private key in the data dir.
const devKeyFile = "dev-issuer.jwk"

// DevKey is the dev issuer's Ed25519 signing key.
type DevKey struct {
	private jwk.Key
}

// LoadOrCreateDevKey reads the dev signing key from dataDir, creating it (0600)
// on first use.
func LoadOrCreateDevKey(dataDir string) (*DevKey, error) {
	path := filepath.Join(dataDir, devKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		k, err := jwk.ParseKey(b)
		if err != nil {
			return nil, fmt.Errorf("dev issuer key %s: %w", path, err)
		}
		return &DevKey{private: k}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	k, err := jwk.Import(priv)
	if err != nil {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	if err := k.Set(jwk.KeyIDKey, base64.RawURLEncoding.EncodeToString(tp)); err != nil {
		return nil, err
	}
	if err := k.Set(jwk.AlgorithmKey, jwa.EdDSA()); err != nil {
		return nil, err
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	// O_EXCL: if another process created the key meanwhile, use theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadOrCreateDevKey(dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("dev issuer key: %w", err)
	}
	return &DevKey{private: k}, nil
}

// PublicSet is the key set a verifier of dev tokens uses.
func (d *DevKey) PublicSet() (jwk.Set, error) {
	pub, err := d.private.PublicKey()
	if err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	return set, nil
}

// JWKS is the public key set as served at /.well-known/jwks.json.
func (d *DevKey) JWKS() ([]byte, error) {
	set, err := d.PublicSet()
	if err != nil {
		return nil, err
	}
	return json.Marshal(set)
}

// TokenRequest describes a dev token.
type TokenRequest struct {
	Subject  string
	Tenant   string
	Actor    string   // act.sub: the agent acting for Subject (optional)
	Scopes   []string // e.g. tickets:read
	Projects []string // authorization_details ticket_access projects (optional narrowing)
	Audience string
	TTL      time.Duration
	Now      time.Time
}

// Mint signs an at+jwt access token.
func (d *DevKey) Mint(r TokenRequest) (string, error) {
	switch {
	case !ValidSubject(r.Subject):
		return "", errors.New("dev token: --sub is required and must not contain spaces, '#' or '~'")
	case !ValidID(r.Tenant):
		return "", errors.New("dev token: --tenant is required and must be an id")
	case r.Actor != "" && !ValidID(r.Actor):
		return "", errors.New("dev token: --act must be an id")
	case r.Audience == "":
		return "", errors.New("dev token: an audience is required")
	case r.TTL <= 0:
		return "", errors.New("dev token: --ttl must be positive")
	}
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	b := jwt.NewBuilder().Issuer(DevIssuer).Subject(r.Subject).Audience([]string{r.Audience}).
		IssuedAt(now).NotBefore(now).Expiration(now.Add(r.TTL)).JwtID(randomHex(8)).
		Claim(DefaultTenantClaim, r.Tenant)
	if len(r.Scopes) > 0 {
		s := r.Scopes[0]
		for _, x := range r.Scopes[1:] {
			s += " " + x
		}
		b = b.Claim("scope", s)
	}
	if r.Actor != "" {
		b = b.Claim("act", map[string]string{"sub": r.Actor})
	}
	if len(r.Projects) > 0 {
		b = b.Claim("authorization_details", []authorizationDetail{{Type: TicketAccess, Actions: []string{"read"}, Projects: r.Projects}})
	}
	tok, err := b.Build()
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "at+jwt"); err != nil {
		return "", err
	}
	out, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA(), d.private, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("dev token: %w", err)
	}
	return string(out), nil
}
