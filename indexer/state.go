package indexer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance/internal/pgschema"
)

// State persists each source's watermark between runs.
type State interface {
	// Load returns the saved watermark of source ("" when there is none).
	Load(ctx context.Context, source string) (string, error)
	// Save durably records the watermark of source.
	Save(ctx context.Context, source, watermark string) error
}

// FileState keeps watermarks in one JSON file, replaced atomically (write to a
// temporary file, fsync, rename, fsync the directory), so a crash leaves either
// the old or the new state, never a torn one.
type FileState struct {
	path string
	mu   sync.Mutex
}

// NewFileState returns the state kept in dataDir/indexer-state.json, creating
// dataDir if needed.
func NewFileState(dataDir string) (*FileState, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("indexer state: %w", err)
	}
	return &FileState{path: filepath.Join(dataDir, "indexer-state.json")}, nil
}

// Path is the state file, absolute when it can be made so.
func (s *FileState) Path() string {
	if abs, err := filepath.Abs(s.path); err == nil {
		return abs
	}
	return s.path
}

func (s *FileState) read() (map[string]string, error) {
	m := map[string]string{}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("indexer state: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("indexer state %s: %w", s.path, err)
	}
	return m, nil
}

// Load implements State.
func (s *FileState) Load(_ context.Context, source string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.read()
	return m[source], err
}

// Save implements State.
func (s *FileState) Save(_ context.Context, source, watermark string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.read()
	if err != nil {
		return err
	}
	m[source] = watermark
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.path, b); err != nil {
		return fmt.Errorf("indexer state: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// PGState keeps watermarks in the table clearance_index_state of a PostgreSQL
// database, for deployments whose replicas share a database and no disk.
type PGState struct {
	pool *pgxpool.Pool
}

// NewPGState brings clearance's schema up to date (internal/pgschema). The
// caller owns the pool.
func NewPGState(ctx context.Context, pool *pgxpool.Pool) (*PGState, error) {
	if err := pgschema.Migrate(ctx, pool.Config().ConnConfig, nil); err != nil {
		return nil, fmt.Errorf("indexer state: %w", err)
	}
	return &PGState{pool: pool}, nil
}

// Load implements State.
func (s *PGState) Load(ctx context.Context, source string) (string, error) {
	var w string
	err := s.pool.QueryRow(ctx, `SELECT watermark FROM clearance_index_state WHERE source = $1`, source).Scan(&w)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("indexer state: %w", err)
	}
	return w, nil
}

// Save implements State.
func (s *PGState) Save(ctx context.Context, source, watermark string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO clearance_index_state (source, watermark) VALUES ($1, $2)
		ON CONFLICT (source) DO UPDATE SET watermark = EXCLUDED.watermark, updated_at = now()`, source, watermark)
	if err != nil {
		return fmt.Errorf("indexer state: %w", err)
	}
	return nil
}
