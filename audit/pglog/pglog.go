// Package pglog stores the audit log in PostgreSQL: one row per record with the
// exact sealed JSON and a few indexed columns for filters. A group commit writes
// each batch in one transaction that locks the chain head row, so every replica
// of the server appends to the same single chain.
package pglog

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/internal/commit"
	"github.com/clearance-dev/clearance/internal/pgschema"
)

// Config of a PostgreSQL log.
type Config struct {
	// URL of the database (serve's --database-url). Ignored when Pool is set.
	URL string
	// Pool is used instead of opening one from URL; Close leaves it open.
	Pool *pgxpool.Pool
	// KeyPath is the Ed25519 seed that signs retention checkpoints
	// (<data-dir>/audit/checkpoint.key). Needed to prune; Verify trusts it when
	// present.
	KeyPath string
	// Retention deletes records older than this behind a signed checkpoint (0:
	// keep everything), checked every RetentionInterval (default 1h).
	Retention         time.Duration
	RetentionInterval time.Duration
	// HashQueries stores only the sha256 of query texts.
	HashQueries bool
	// FailOpen lets Append succeed when the database fails (the record is lost and
	// an error is logged). Off by default: searches then fail closed.
	FailOpen bool
	// Observe, when set, is told about every group-commit write (metrics).
	Observe audit.FlushObserver
	// WriteTimeout bounds one batch transaction (default 5s).
	WriteTimeout time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

// Log is an audit log in PostgreSQL. It implements audit.Log and audit.Reader.
type Log struct {
	cfg       Config
	opts      audit.Options
	pool      *pgxpool.Pool
	ownPool   bool
	log       *slog.Logger
	ids       audit.IDs // used by the single writer goroutine only
	committer *commit.Committer
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ audit.Log    = (*Log)(nil)
	_ audit.Reader = (*Log)(nil)
)

// Open connects, brings clearance's schema up to date (internal/pgschema) and
// starts the writer.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.Pool == nil && cfg.URL == "" {
		return nil, clearance.Invalid("url", "is required")
	}
	if cfg.Retention < 0 {
		return nil, clearance.Invalid("retention", "must not be negative")
	}
	if cfg.Retention > 0 && cfg.KeyPath == "" {
		return nil, clearance.Invalid("key_path", "is required with retention (it signs the checkpoint)")
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = time.Hour
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{cfg: cfg, opts: audit.Options{HashQueries: cfg.HashQueries, Now: cfg.Now}, pool: cfg.Pool, log: cfg.Logger, stop: make(chan struct{})}
	if l.pool == nil {
		pool, err := pgxpool.New(ctx, cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
		}
		l.pool, l.ownPool = pool, true
	}
	if err := l.migrate(ctx); err != nil {
		if l.ownPool {
			l.pool.Close()
		}
		return nil, err
	}
	l.committer = commit.New(commit.Config{Flush: l.flush, FailOpen: cfg.FailOpen, Logger: cfg.Logger, Observe: cfg.Observe})
	if cfg.Retention > 0 {
		l.wg.Add(1)
		go l.retain()
	}
	return l, nil
}

// migrate applies clearance's migrations (one path, under an advisory lock, so
// replicas starting together do not race) and seeds the chain's head; the
// insert is a no-op when another replica did it first.
func (l *Log) migrate(ctx context.Context) error {
	if err := pgschema.Migrate(ctx, l.pool.Config().ConnConfig, l.log); err != nil {
		if errors.Is(err, pgschema.ErrNewerSchema) {
			return fmt.Errorf("audit log: %w", err)
		}
		return fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	_, err := l.pool.Exec(ctx, `INSERT INTO audit_head (one, seq, id, hash) VALUES (true, 0, '', $1) ON CONFLICT DO NOTHING`, audit.Genesis)
	if err != nil {
		return fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	return nil
}

// Append makes r durable (group commit) and fills its ID, PrevHash and Hash.
func (l *Log) Append(ctx context.Context, r *audit.Record) error {
	if err := l.opts.Prepare(r); err != nil {
		return err
	}
	return l.committer.Append(ctx, r)
}

var recordColumns = []string{"seq", "id", "time", "tenant", "principal", "agent", "tickets", "record"}

// flush writes one batch in one transaction holding the chain head's row lock.
func (l *Log) flush(recs []*audit.Pending) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.WriteTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var seq int64
		var headID, head string
		if err := tx.QueryRow(ctx, `SELECT seq, id, hash FROM audit_head WHERE one FOR UPDATE`).Scan(&seq, &headID, &head); err != nil {
			return err
		}
		now := l.cfg.Now()
		rows := make([][]any, len(recs))
		for i, p := range recs {
			line := p.Seal(l.ids.Next(now, headID), head)
			r := p.Record
			seq++
			rows[i] = []any{seq, r.ID, r.Time, r.Tenant, principalOf(r), r.Principal.Agent, ticketsOf(r), string(line)}
			headID, head = r.ID, r.Hash
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_records"}, recordColumns, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE audit_head SET seq = $1, id = $2, hash = $3 WHERE one`, seq, headID, head)
		return err
	})
	if err != nil {
		return fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	return nil
}

func principalOf(r *audit.Record) string {
	if r.Principal.User != "" {
		return r.Principal.User
	}
	return r.Principal.ServiceAccount
}

func ticketsOf(r *audit.Record) []string {
	out := make([]string, 0, len(r.Results))
	seen := make(map[string]bool, len(r.Results))
	for _, c := range r.Results {
		if !seen[c.TicketID] {
			seen[c.TicketID] = true
			out = append(out, c.TicketID)
		}
	}
	return out
}

// List answers records newest first (oldest first with Filter.After).
func (l *Log) List(ctx context.Context, f audit.Filter) (audit.Page, error) {
	if err := f.Validate(); err != nil {
		return audit.Page{}, err
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Tenant != "" {
		add("tenant = ?", f.Tenant)
	}
	if f.Principal != "" {
		add("principal = ?", f.Principal)
	}
	if f.Agent != "" {
		add("agent = ?", f.Agent)
	}
	if f.Ticket != "" {
		add("tickets @> ARRAY[?::text]", f.Ticket)
	}
	if !f.Since.IsZero() {
		add("time >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		add("time < ?", f.Until)
	}
	order := "DESC"
	switch {
	case f.Cursor != "":
		add("id < ?", f.Cursor)
	case f.After != "":
		add("id > ?", f.After)
		order = "ASC"
	}
	q := "SELECT record FROM audit_records"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY id %s LIMIT %d", order, f.Limit+1)
	rows, err := l.pool.Query(ctx, q, args...)
	if err != nil {
		return audit.Page{}, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	var out []audit.Record
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			rows.Close()
			return audit.Page{}, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			continue // corrupt rows are Verify's business
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return audit.Page{}, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	var p audit.Page
	switch {
	case len(out) > f.Limit:
		out = out[:f.Limit]
		p.Next = out[len(out)-1].ID
	case f.After != "" && len(out) > 0:
		p.Next = out[len(out)-1].ID
	case f.After != "":
		p.Next = f.After
	}
	p.Records = out
	return p, nil
}

// Get answers one record.
func (l *Log) Get(ctx context.Context, id string) (*audit.Record, error) {
	var raw string
	err := l.pool.QueryRow(ctx, `SELECT record FROM audit_records WHERE id = $1`, id).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("audit record %q: %w", id, clearance.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	var r audit.Record
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("audit record %q is corrupt: %w", id, err)
	}
	return &r, nil
}

// Verify walks the rows in chain order from the latest checkpoint and checks that
// the last one is the head the writers recorded (rows cut from the end show too).
func (l *Log) Verify(ctx context.Context) (audit.VerifyReport, error) {
	// One snapshot for checkpoint, head and rows, so a concurrent prune or append
	// cannot look like a gap.
	tx, err := l.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return audit.VerifyReport{}, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	defer tx.Rollback(ctx)
	cp, err := checkpoint(ctx, tx)
	if err != nil {
		return audit.VerifyReport{}, err
	}
	v := audit.NewVerifier(cp)
	if cp != nil {
		var trusted ed25519.PublicKey
		if l.cfg.KeyPath != "" {
			if key, err := audit.LoadKey(l.cfg.KeyPath, false); err == nil {
				trusted = key.Public().(ed25519.PublicKey)
			}
		}
		if err := cp.Check(trusted); err != nil {
			v.Fail(audit.BadCheckpoint, cp.ID, err.Error())
			return v.Report(), nil
		}
	}
	var headSeq int64
	var headID, head string
	if err := tx.QueryRow(ctx, `SELECT seq, id, hash FROM audit_head WHERE one`).Scan(&headSeq, &headID, &head); err != nil {
		return audit.VerifyReport{}, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	rows, err := tx.Query(ctx, `SELECT record FROM audit_records WHERE seq <= $1 ORDER BY seq`, headSeq)
	if err != nil {
		return audit.VerifyReport{}, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	defer rows.Close()
	for rows.Next() && !v.Done() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return audit.VerifyReport{}, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
		}
		v.Add([]byte(raw))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return audit.VerifyReport{}, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	if rep := v.Report(); rep.OK() && rep.HeadHash != head {
		v.Fail(audit.Removed, headID, fmt.Sprintf("the chain ends at %s but the head was written as %s: records at the end were removed", orNone(rep.LastID), headID))
	}
	return v.Report(), nil
}

func orNone(id string) string {
	if id == "" {
		return "the checkpoint"
	}
	return id
}

func checkpoint(ctx context.Context, tx pgx.Tx) (*audit.Checkpoint, error) {
	var raw string
	err := tx.QueryRow(ctx, `SELECT checkpoint FROM audit_checkpoints ORDER BY id DESC LIMIT 1`).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", audit.ErrUnavailable, err)
	}
	var cp audit.Checkpoint
	if err := json.Unmarshal([]byte(raw), &cp); err != nil {
		return nil, fmt.Errorf("audit: checkpoint: %w", err)
	}
	return &cp, nil
}

// Prune deletes the records before the first one at or after before, and stores a
// signed checkpoint of the last deleted record in the same transaction.
func (l *Log) Prune(ctx context.Context, before time.Time) (*audit.Checkpoint, error) {
	if l.cfg.KeyPath == "" {
		return nil, clearance.Invalid("key_path", "is required to prune (it signs the checkpoint)")
	}
	key, err := audit.LoadKey(l.cfg.KeyPath, true)
	if err != nil {
		return nil, err
	}
	var cp *audit.Checkpoint
	err = pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		// Serializes with appends, so the kept prefix boundary does not move.
		var headSeq int64
		if err := tx.QueryRow(ctx, `SELECT seq FROM audit_head WHERE one FOR UPDATE`).Scan(&headSeq); err != nil {
			return err
		}
		var seq int64
		var c audit.Checkpoint
		err := tx.QueryRow(ctx, `SELECT seq, id, time, record::json->>'hash' FROM audit_records
			WHERE seq < COALESCE((SELECT min(seq) FROM audit_records WHERE time >= $1), $2 + 1)
			ORDER BY seq DESC LIMIT 1`, before, headSeq).Scan(&seq, &c.ID, &c.Time, &c.Hash)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		c.Time, c.Records, c.Created = c.Time.UTC(), seq, l.cfg.Now().UTC()
		if err := c.Sign(key); err != nil {
			return err
		}
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_checkpoints (id, checkpoint) VALUES ($1, $2)`, c.ID, string(b)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM audit_records WHERE seq <= $1`, seq)
		if err != nil {
			return err
		}
		l.log.Info("audit: pruned records", "records", tag.RowsAffected(), "checkpoint", c.ID, "before", before)
		cp = &c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: prune: %v", audit.ErrUnavailable, err)
	}
	return cp, nil
}

func (l *Log) retain() {
	defer l.wg.Done()
	commit.Retain(l.stop, l.cfg.RetentionInterval, l.cfg.Retention, l.cfg.Now, l.Prune, l.log)
}

// Close writes what is queued and closes the pool it opened.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.committer.Close()
		close(l.stop)
		l.wg.Wait()
		if l.ownPool {
			l.pool.Close()
		}
	})
	return nil
}
