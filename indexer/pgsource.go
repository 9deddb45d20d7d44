package indexer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance"
)

// Columns maps the fields of a ticket to the columns of a source table or
// query. Deleted is optional: without it, only a full sync notices deletions.
type Columns struct {
	ID, Tenant, Project, Title, Body, UpdatedAt, Deleted string
}

// DefaultColumns names every column like its ticket field.
var DefaultColumns = Columns{ID: "id", Tenant: "tenant", Project: "project", Title: "title", Body: "body", UpdatedAt: "updated_at"}

// ParseColumns reads a mapping like "id=ticket_id,tenant=org,deleted=is_deleted"
// on top of DefaultColumns.
func ParseColumns(s string) (Columns, error) {
	c := DefaultColumns
	if strings.TrimSpace(s) == "" {
		return c, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || v == "" {
			return c, clearance.Invalid("pg-columns", "%q is not field=column", kv)
		}
		dst, ok := map[string]*string{
			"id": &c.ID, "tenant": &c.Tenant, "project": &c.Project, "title": &c.Title,
			"body": &c.Body, "updated_at": &c.UpdatedAt, "deleted": &c.Deleted,
		}[k]
		if !ok {
			return c, clearance.Invalid("pg-columns", "unknown field %q (want id, tenant, project, title, body, updated_at, deleted)", k)
		}
		*dst = v
	}
	return c, nil
}

// PGConfig configures a PostgreSQL source.
type PGConfig struct {
	// Pool is the source database; the caller owns it.
	Pool *pgxpool.Pool
	// Table ("tickets" or "schema.tickets") or Query (any SELECT, used as a
	// subquery) names the rows; exactly one is set.
	Table, Query string
	Columns      Columns
	// PageSize is the number of rows per query and batch (default 500).
	PageSize int
	// Lag re-reads rows updated up to Lag before the watermark, for writers
	// whose transactions commit after rows with later updated_at values were
	// already read. Re-read rows are skipped by their content hash.
	Lag time.Duration
}

// PG reads tickets from a PostgreSQL table or query in pages ordered by
// (updated_at, id): the watermark is the last row's pair, so an incremental run
// reads only rows changed since. Rows with a NULL updated_at sort first (as
// 1970-01-01) so a full sync still sees them.
type PG struct {
	cfg  PGConfig
	name string
	// first reads the first page ($1 is the limit), next the pages after the
	// keyset ($1, $2) with limit $3.
	first, next string
}

// NewPG builds the page query. It does not touch the database.
func NewPG(cfg PGConfig) (*PG, error) {
	if cfg.Pool == nil {
		return nil, fmt.Errorf("postgres source: no connection pool")
	}
	if (cfg.Table == "") == (cfg.Query == "") {
		return nil, clearance.Invalid("pg-table", "set exactly one of a table and a query")
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 500
	}
	if cfg.Columns == (Columns{}) {
		cfg.Columns = DefaultColumns
	}
	c := cfg.Columns
	for field, col := range map[string]string{"id": c.ID, "tenant": c.Tenant, "project": c.Project, "title": c.Title, "body": c.Body, "updated_at": c.UpdatedAt} {
		if col == "" {
			return nil, clearance.Invalid("pg-columns", "no column for %s", field)
		}
	}
	col := func(name string) string { return "src." + pgx.Identifier{name}.Sanitize() }
	var from, what string
	if cfg.Table != "" {
		from = pgx.Identifier(strings.Split(cfg.Table, ".")).Sanitize()
		what = cfg.Table
	} else {
		from = "(" + strings.TrimRight(strings.TrimSpace(cfg.Query), ";") + ")"
		h := sha256.Sum256([]byte(cfg.Query))
		what = "query-" + hex.EncodeToString(h[:6])
	}
	deleted := "false"
	if c.Deleted != "" {
		deleted = "coalesce(" + col(c.Deleted) + "::boolean, false)"
	}
	ts := "coalesce(" + col(c.UpdatedAt) + "::timestamptz, 'epoch'::timestamptz)"
	id := col(c.ID) + "::text"
	sel := fmt.Sprintf(`SELECT %s, %s::text, %s::text, coalesce(%s::text, ''), coalesce(%s::text, ''), %s, %s FROM %s AS src`,
		id, col(c.Tenant), col(c.Project), col(c.Title), col(c.Body), ts, deleted, from)
	order := fmt.Sprintf(` ORDER BY %s, %s`, ts, id)
	return &PG{
		cfg:   cfg,
		name:  "postgres:" + dbName(cfg.Pool) + ":" + what,
		first: sel + order + ` LIMIT $1`,
		next:  sel + fmt.Sprintf(` WHERE (%s, %s) > ($1::timestamptz, $2::text)`, ts, id) + order + ` LIMIT $3`,
	}, nil
}

// dbName is host/database of the pool, without credentials.
func dbName(p *pgxpool.Pool) string {
	cc := p.Config().ConnConfig
	return (&url.URL{Host: fmt.Sprintf("%s:%d", cc.Host, cc.Port), Path: cc.Database}).String()[2:]
}

// Name implements Source.
func (s *PG) Name() string { return s.name }

type pgWatermark struct {
	UpdatedAt time.Time `json:"updated_at"`
	ID        string    `json:"id"`
}

// Read implements Source.
func (s *PG) Read(ctx context.Context, since string) iter.Seq2[Batch, error] {
	return func(yield func(Batch, error) bool) {
		first := since == ""
		var wm pgWatermark
		if !first {
			if err := json.Unmarshal([]byte(since), &wm); err != nil {
				yield(Batch{}, fmt.Errorf("postgres source: bad watermark: %w", err))
				return
			}
			if s.cfg.Lag > 0 {
				wm = pgWatermark{UpdatedAt: wm.UpdatedAt.Add(-s.cfg.Lag)}
			}
		}
		for {
			var rows pgx.Rows
			var err error
			if first {
				rows, err = s.cfg.Pool.Query(ctx, s.first, s.cfg.PageSize)
			} else {
				rows, err = s.cfg.Pool.Query(ctx, s.next, wm.UpdatedAt, wm.ID, s.cfg.PageSize)
			}
			if err != nil {
				yield(Batch{}, fmt.Errorf("postgres source: %w", err))
				return
			}
			var batch Batch
			for rows.Next() {
				var (
					id, tenant, project *string
					r                   Row
				)
				if err := rows.Scan(&id, &tenant, &project, &r.Title, &r.Body, &r.UpdatedAt, &r.Deleted); err != nil {
					rows.Close()
					yield(Batch{}, fmt.Errorf("postgres source: %w", err))
					return
				}
				r.ID, r.Tenant, r.Project = deref(id), deref(tenant), deref(project)
				wm = pgWatermark{UpdatedAt: r.UpdatedAt, ID: r.ID}
				ref := "id=" + r.ID
				if id == nil {
					ref = "row with NULL id, updated_at " + r.UpdatedAt.Format(time.RFC3339Nano)
				}
				batch.Rows = append(batch.Rows, SourceRow{Row: r, Ref: ref})
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				yield(Batch{}, fmt.Errorf("postgres source: %w", err))
				return
			}
			if len(batch.Rows) == 0 {
				return
			}
			b, _ := json.Marshal(wm)
			batch.Watermark = string(b)
			if !yield(batch, nil) {
				return
			}
			first = false
			if len(batch.Rows) < s.cfg.PageSize {
				return
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
