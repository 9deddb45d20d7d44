// Package pgsession keeps the audit page's sessions in PostgreSQL (table
// clearance_audit_sessions), so that every replica behind a load balancer knows
// a sign-in made on any of them and a sign-out ends it on all.
//
// Only the SHA-256 of a cookie value is stored: someone who reads the table
// cannot sign in with what they read.
package pgsession

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/api"
	"github.com/clearance-dev/clearance/internal/pgschema"
)

// Store is an api.SessionStore on PostgreSQL.
type Store struct {
	pool    *pgxpool.Pool
	timeout time.Duration
}

var _ api.SessionStore = (*Store)(nil)

// Open connects (a small pool: sign-ins and page views are few) and brings
// clearance's schema up to date.
func Open(ctx context.Context, databaseURL string, log *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, clearance.Invalid("database_url", "%v", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("audit page sessions: %w: %w", clearance.ErrUnavailable, err)
	}
	if err := pgschema.Migrate(ctx, cfg.ConnConfig, log); err != nil {
		pool.Close()
		return nil, fmt.Errorf("audit page sessions: %w", err)
	}
	return &Store{pool: pool, timeout: 5 * time.Second}, nil
}

// Close closes the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func hashID(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}

func unavailable(op string, err error) error {
	return fmt.Errorf("audit page sessions: %s: %w: %w", op, clearance.ErrUnavailable, err)
}

// Put implements api.SessionStore; it also drops sessions expired by now.
func (s *Store) Put(ctx context.Context, id string, ps api.PageSession, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	principal, err := json.Marshal(ps.Principal)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM clearance_audit_sessions WHERE expires_at <= $1`, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO clearance_audit_sessions (id_hash, principal, csrf, expires_at) VALUES ($1, $2, $3, $4)`,
			hashID(id), principal, ps.CSRF, ps.Expires)
		return err
	})
	if err != nil {
		return unavailable("put", err)
	}
	return nil
}

// Get implements api.SessionStore.
func (s *Store) Get(ctx context.Context, id string, now time.Time) (api.PageSession, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var (
		ps        api.PageSession
		principal []byte
	)
	err := s.pool.QueryRow(ctx, `SELECT principal, csrf, expires_at FROM clearance_audit_sessions WHERE id_hash = $1 AND expires_at > $2`,
		hashID(id), now).Scan(&principal, &ps.CSRF, &ps.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return api.PageSession{}, fmt.Errorf("audit page session: %w", clearance.ErrNotFound)
	}
	if err != nil {
		return api.PageSession{}, unavailable("get", err)
	}
	if err := json.Unmarshal(principal, &ps.Principal); err != nil {
		return api.PageSession{}, unavailable("get", err)
	}
	return ps, nil
}

// Delete implements api.SessionStore.
func (s *Store) Delete(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM clearance_audit_sessions WHERE id_hash = $1`, hashID(id)); err != nil {
		return unavailable("delete", err)
	}
	return nil
}
