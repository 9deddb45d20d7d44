package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/internal/pgschema"
)

// PGKeys keeps key records in the table clearance_api_keys.
type PGKeys struct {
	pool *pgxpool.Pool
}

// OpenPGKeys connects to databaseURL and brings clearance's schema up to date
// (internal/pgschema).
func OpenPGKeys(ctx context.Context, databaseURL string) (*PGKeys, error) {
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	if err := pgschema.Migrate(ctx, pool.Config().ConnConfig, nil); err != nil {
		pool.Close()
		return nil, fmt.Errorf("api keys: %w", err)
	}
	return &PGKeys{pool: pool}, nil
}

// Insert adds a record.
func (p *PGKeys) Insert(ctx context.Context, r KeyRecord) error {
	var kind, user *string
	if r.CreatedBy != nil {
		kind, user = &r.CreatedBy.Kind, &r.CreatedBy.User
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO clearance_api_keys (id, tenant, service_account, name, scopes, salt, hash, created_at, created_by_kind, created_by_user)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`, r.ID, r.Tenant, r.ServiceAccount, r.Name, r.Scopes, r.Salt, r.Hash, r.CreatedAt, kind, user)
	if err != nil {
		return fmt.Errorf("api keys insert: %w", err)
	}
	return nil
}

const pgKeyCols = `id, tenant, service_account, name, scopes, salt, hash, created_at, last_used_at, created_by_kind, created_by_user`

func scanKey(row pgx.Row) (KeyRecord, error) {
	var r KeyRecord
	var kind, user *string
	err := row.Scan(&r.ID, &r.Tenant, &r.ServiceAccount, &r.Name, &r.Scopes, &r.Salt, &r.Hash, &r.CreatedAt, &r.LastUsedAt, &kind, &user)
	if kind != nil {
		r.CreatedBy = &Creator{Kind: *kind}
		if user != nil {
			r.CreatedBy.User = *user
		}
	}
	r.CreatedAt = r.CreatedAt.UTC()
	if r.LastUsedAt != nil {
		t := r.LastUsedAt.UTC()
		r.LastUsedAt = &t
	}
	return r, err
}

// Get returns the record with id.
func (p *PGKeys) Get(ctx context.Context, id string) (KeyRecord, error) {
	r, err := scanKey(p.pool.QueryRow(ctx, `SELECT `+pgKeyCols+` FROM clearance_api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return KeyRecord{}, fmt.Errorf("api key %q: %w", id, clearance.ErrNotFound)
	}
	if err != nil {
		return KeyRecord{}, fmt.Errorf("api keys get: %w", err)
	}
	return r, nil
}

// List returns the tenant's records ("" = all).
func (p *PGKeys) List(ctx context.Context, tenant string) ([]KeyRecord, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+pgKeyCols+` FROM clearance_api_keys WHERE $1 = '' OR tenant = $1 ORDER BY created_at, id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("api keys list: %w", err)
	}
	defer rows.Close()
	out := []KeyRecord{}
	for rows.Next() {
		r, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("api keys list: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Delete removes the tenant's key id.
func (p *PGKeys) Delete(ctx context.Context, tenant, id string) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM clearance_api_keys WHERE id = $1 AND tenant = $2`, id, tenant)
	if err != nil {
		return fmt.Errorf("api keys delete: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("api key %q: %w", id, clearance.ErrNotFound)
	}
	return nil
}

// Touch records the last use of id.
func (p *PGKeys) Touch(ctx context.Context, id string, at time.Time) error {
	_, err := p.pool.Exec(ctx, `UPDATE clearance_api_keys SET last_used_at = $2 WHERE id = $1`, id, at)
	if err != nil {
		return fmt.Errorf("api keys touch: %w", err)
	}
	return nil
}

// Close closes the pool.
func (p *PGKeys) Close() error {
	p.pool.Close()
	return nil
}
