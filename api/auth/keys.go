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

// Create makes a key for serviceAccount of tenant and returns it; the full key
// is only ever in this return value.
func (k *Keys) Create(ctx context.Context, tenant, serviceAccount, name string, scopes []string) (KeyInfo, string, error) {
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
	info := KeyInfo{ID: id, Tenant: tenant, ServiceAccount: serviceAccount, Name: name, Scopes: scopes, CreatedAt: k.now().UTC().Truncate(time.Microsecond)}
	if err := k.backend.Insert(ctx, KeyRecord{KeyInfo: info, Salt: salt, Hash: hashSecret(salt, secret)}); err != nil {
		return KeyInfo{}, "", fmt.Errorf("create api key: %w", err)
	}
	k.log.Info("api key created", "tenant", tenant, "service_account", serviceAccount, "key_id", id)
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
	k.touch(ctx, id)
	return authz.Principal{
		Kind: authz.KindServiceAccount, Tenant: r.Tenant, ServiceAccount: r.ServiceAccount,
		APIKeyID: r.ID, AuthMethod: "api_key", Scopes: r.Scopes,
	}, nil
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
