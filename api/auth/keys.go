package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// API keys look like clr_<id>_<secret>: id 16 hex digits, secret 64.
const (
	KeyPrefix    = "clr_"
	keyIDLen     = 16
	keySecretLen = 64
)

// KeyInfo describes a key without its secret.
type KeyInfo struct {
	ID             string     `json:"id"`
	Tenant         string     `json:"tenant"`
	ServiceAccount string     `json:"service_account"`
	Name           string     `json:"name,omitempty"`
	Scopes         []string   `json:"scopes"`
	CreatedAt      time.Time  `json:"created_at"`
	LastUsedAt     *time.Time `json:"last_used_at,omitempty"`
	// CreatedBy is who minted the key. A key without it (made before clearance
	// recorded minters) is refused: its minter, and so its bound, is unknown.
	CreatedBy *Creator `json:"created_by,omitempty"`
}

// Kinds of key creators.
const (
	// CreatorTenantAdmin: a tenant admin minted the key over the API. The key
	// sees only what both its service account and that admin may view now.
	CreatorTenantAdmin = "tenant_admin"
	// CreatorOperator: an operator (clearance:admin token, or the keys command
	// with direct access to the key store) minted the key. It is bounded by its
	// service account's tuples only: operators already administer every tenant.
	CreatorOperator = "operator"
)

// Creator is who minted a key.
type Creator struct {
	// Kind is CreatorTenantAdmin or CreatorOperator.
	Kind string `json:"kind"`
	// User is the minter's token sub; required for a tenant admin, empty when
	// an operator used the keys command.
	User string `json:"user,omitempty"`
}

func (c *Creator) validate() error {
	switch {
	case c == nil:
		return errors.New("api key: the creator is required")
	case c.Kind == CreatorTenantAdmin && c.User == "":
		return errors.New("api key: a tenant admin creator needs the user")
	case c.Kind != CreatorTenantAdmin && c.Kind != CreatorOperator:
		return fmt.Errorf("api key: unknown creator kind %q", c.Kind)
	}
	return nil
}

// KeyRecord is what a backend stores: the info plus a per-key salt and the
// HMAC-SHA256 of the secret under that salt. The secret itself is never stored.
type KeyRecord struct {
	KeyInfo
	Salt []byte `json:"salt"`
	Hash []byte `json:"hash"`
}

// KeyBackend stores key records (a JSON file in the data dir, or Postgres).
type KeyBackend interface {
	Insert(ctx context.Context, r KeyRecord) error
	// Get returns the record (clearance.ErrNotFound if missing or revoked).
	Get(ctx context.Context, id string) (KeyRecord, error)
	// List returns the tenant's records ("" = every tenant), oldest first.
	List(ctx context.Context, tenant string) ([]KeyRecord, error)
	// Delete revokes the key of that tenant (clearance.ErrNotFound if missing).
	Delete(ctx context.Context, tenant, id string) error
	// Touch records a use.
	Touch(ctx context.Context, id string, at time.Time) error
	Close() error
}

// ServiceAccountScopes may be given to API keys; operator scopes never are.
var ServiceAccountScopes = []string{"tickets:read", "clearance:index"}

// Keys creates, lists, revokes and verifies API keys over a backend.
type Keys struct {
	backend KeyBackend
	log     *slog.Logger
	now     func() time.Time

	mu      sync.Mutex
	touched map[string]time.Time
}

// touchEvery limits last-used writes to one per key per minute.
const touchEvery = time.Minute

// NewKeys returns a key manager over backend.
func NewKeys(backend KeyBackend, log *slog.Logger) *Keys {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keys{backend: backend, log: log, now: time.Now, touched: map[string]time.Time{}}
}

// Close closes the backend.
func (k *Keys) Close() error { return k.backend.Close() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func hashSecret(salt []byte, secret string) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// Create makes a key for serviceAccount of tenant, minted by by, and returns
// it; the full key is only ever in this return value. The caller has checked
// that by may manage the tenant and that the service account belongs to it.
func (k *Keys) Create(ctx context.Context, tenant, serviceAccount, name string, scopes []string, by Creator) (KeyInfo, string, error) {
	if err := by.validate(); err != nil {
		return KeyInfo{}, "", err
	}
	switch {
	case !ValidID(tenant):
		return KeyInfo{}, "", clearance.Invalid("tenant", "must be an id")
	case !ValidID(serviceAccount):
		return KeyInfo{}, "", clearance.Invalid("service_account", "is required and must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
	case len(name) > 200 || strings.ContainsAny(name, "\n\r\t"):
		return KeyInfo{}, "", clearance.Invalid("name", "must be one line of at most 200 bytes")
	}
	if len(scopes) == 0 {
		scopes = []string{"tickets:read"}
	}
	for i, s := range scopes {
		ok := false
		for _, a := range ServiceAccountScopes {
			ok = ok || s == a
		}
		if !ok {
			return KeyInfo{}, "", clearance.Invalid(fmt.Sprintf("scopes[%d]", i), "must be one of %s", strings.Join(ServiceAccountScopes, ", "))
		}
	}
	id, secret := randomHex(keyIDLen/2), randomHex(keySecretLen/2)
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	info := KeyInfo{ID: id, Tenant: tenant, ServiceAccount: serviceAccount, Name: name, Scopes: scopes, CreatedAt: k.now().UTC().Truncate(time.Microsecond), CreatedBy: &by}
	if err := k.backend.Insert(ctx, KeyRecord{KeyInfo: info, Salt: salt, Hash: hashSecret(salt, secret)}); err != nil {
		return KeyInfo{}, "", fmt.Errorf("create api key: %w", err)
	}
	k.log.Info("api key created", "tenant", tenant, "service_account", serviceAccount, "key_id", id, "created_by", by.Kind, "creator", by.User)
	return info, KeyPrefix + id + "_" + secret, nil
}

// List returns the tenant's keys ("" = all).
func (k *Keys) List(ctx context.Context, tenant string) ([]KeyInfo, error) {
	rs, err := k.backend.List(ctx, tenant)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	out := make([]KeyInfo, len(rs))
	for i, r := range rs {
		out[i] = r.KeyInfo
	}
	return out, nil
}

// Revoke deletes the tenant's key id; the next request with it is refused.
func (k *Keys) Revoke(ctx context.Context, tenant, id string) error {
	if err := k.backend.Delete(ctx, tenant, id); err != nil {
		return fmt.Errorf("revoke api key %q: %w", id, err)
	}
	k.log.Info("api key revoked", "tenant", tenant, "key_id", id)
	return nil
}

// Authenticate verifies a clr_ key and returns its service-account principal.
// Every failure is the same ErrUnauthenticated to the caller.
func (k *Keys) Authenticate(ctx context.Context, key string) (authz.Principal, error) {
	refused := fmt.Errorf("api key refused: %w", clearance.ErrUnauthenticated)
	rest, ok := strings.CutPrefix(key, KeyPrefix)
	if !ok || len(rest) != keyIDLen+1+keySecretLen || rest[keyIDLen] != '_' {
		return authz.Principal{}, refused
	}
	id, secret := rest[:keyIDLen], rest[keyIDLen+1:]
	r, err := k.backend.Get(ctx, id)
	if errors.Is(err, clearance.ErrNotFound) {
		return authz.Principal{}, refused
	}
	if err != nil {
		// The key store is down: fail closed with 503.
		return authz.Principal{}, fmt.Errorf("api key lookup: %v: %w", err, clearance.ErrUnavailable)
	}
	if subtle.ConstantTimeCompare(hashSecret(r.Salt, secret), r.Hash) != 1 {
		return authz.Principal{}, refused
	}
	// A key's reach is bounded by who minted it; without a known minter there
	// is no known bound, so the key is refused (fail closed) until re-created.
	if err := r.CreatedBy.validate(); err != nil {
		k.log.Warn("api key refused: no valid creator recorded; re-create the key", "key_id", id, "tenant", r.Tenant, "err", err)
		return authz.Principal{}, refused
	}
	k.touch(ctx, id)
	p := authz.Principal{
		Kind: authz.KindServiceAccount, Tenant: r.Tenant, ServiceAccount: r.ServiceAccount,
		APIKeyID: r.ID, AuthMethod: "api_key", Scopes: r.Scopes,
	}
	if r.CreatedBy.Kind == CreatorTenantAdmin {
		p.KeyMinter = r.CreatedBy.User
	}
	return p, nil
}

func (k *Keys) touch(ctx context.Context, id string) {
	now := k.now()
	k.mu.Lock()
	due := now.Sub(k.touched[id]) >= touchEvery
	if due {
		k.touched[id] = now
	}
	k.mu.Unlock()
	if due {
		if err := k.backend.Touch(ctx, id, now.UTC().Truncate(time.Microsecond)); err != nil && !errors.Is(err, clearance.ErrNotFound) {
			k.log.Warn("api key: record last use", "key_id", id, "err", err)
		}
	}
}
