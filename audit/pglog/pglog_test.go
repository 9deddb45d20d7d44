package pglog

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/audittest"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// pgStorage is one database for the conformance suite; tampering edits rows the
// way someone with write access to the table would.
type pgStorage struct {
	url string
	key string
}

func (s *pgStorage) pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), s.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func (s *pgStorage) Open(t *testing.T, o audittest.Options) audittest.Backend {
	t.Helper()
	l, err := Open(context.Background(), Config{Pool: s.pool(t), KeyPath: s.key, HashQueries: o.HashQueries, FailOpen: o.FailOpen})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

func (s *pgStorage) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	p := s.pool(t)
	if _, err := p.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("tamper: %v", err)
	}
}

func (s *pgStorage) Edit(t *testing.T, pos int, edit func(string) string) {
	var raw string
	if err := s.pool(t).QueryRow(context.Background(), `SELECT record FROM audit_records WHERE seq = $1`, pos+1).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	s.exec(t, `UPDATE audit_records SET record = $1 WHERE seq = $2`, edit(raw), pos+1)
}

func (s *pgStorage) Delete(t *testing.T, pos int) {
	s.exec(t, `DELETE FROM audit_records WHERE seq = $1`, pos+1)
}

func (s *pgStorage) Swap(t *testing.T, i, j int) {
	s.exec(t, `UPDATE audit_records SET seq = -1 WHERE seq = $1`, i+1)
	s.exec(t, `UPDATE audit_records SET seq = $1 WHERE seq = $2`, i+1, j+1)
	s.exec(t, `UPDATE audit_records SET seq = $1 WHERE seq = -1`, j+1)
}

func (s *pgStorage) EditCheckpoint(t *testing.T, edit func(*audit.Checkpoint)) {
	var id, raw string
	if err := s.pool(t).QueryRow(context.Background(), `SELECT id, checkpoint FROM audit_checkpoints ORDER BY id DESC LIMIT 1`).Scan(&id, &raw); err != nil {
		t.Fatal(err)
	}
	var cp audit.Checkpoint
	if err := json.Unmarshal([]byte(raw), &cp); err != nil {
		t.Fatal(err)
	}
	edit(&cp)
	b, _ := json.Marshal(cp)
	s.exec(t, `UPDATE audit_checkpoints SET checkpoint = $1 WHERE id = $2`, string(b), id)
}

func (s *pgStorage) Break(t *testing.T, b audittest.Backend) {
	b.(*Log).pool.Close()
}

func TestConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audittest.Storage {
		return &pgStorage{url: testenv.DatabaseURL(t), key: filepath.Join(t.TempDir(), "checkpoint.key")}
	})
}

// TestReplicasShareOneChain: two logs on one database (two servers) append
// concurrently; the head lock keeps a single chain with increasing ids.
func TestReplicasShareOneChain(t *testing.T) {
	url := testenv.DatabaseURL(t)
	var logs []*Log
	for range 2 {
		l, err := Open(context.Background(), Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		logs = append(logs, l)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 10 {
				r := audittest.Rec("acme", fmt.Sprintf("w%d", w), "", fmt.Sprintf("T-%d", i))
				if err := logs[w%2].Append(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rep, err := logs[0].Verify(context.Background())
	if err != nil || !rep.OK() || rep.Records != 160 {
		t.Fatalf("verify: %+v %v, want 160 records in one intact chain", rep, err)
	}
}

// TestTailRowsRemoved: rows cut from the end (with the head left alone) are found
// by comparing with the head row.
func TestTailRowsRemoved(t *testing.T) {
	s := &pgStorage{url: testenv.DatabaseURL(t)}
	b := s.Open(t, audittest.Options{})
	defer b.Close()
	for i := range 4 {
		if err := b.Append(context.Background(), audittest.Rec("acme", "u", "", fmt.Sprintf("T-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	s.Delete(t, 3)
	rep, err := b.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Problem == nil || rep.Problem.Kind != audit.Removed {
		t.Fatalf("report %+v, want removed", rep.Problem)
	}
}
