package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/clearance-dev/clearance"
)

// keysFile is the key store in the data dir.
const keysFile = "api-keys.json"

// FileKeys keeps key records in one JSON file, rewritten atomically (temp file,
// fsync, rename) under a file lock. It is read on every lookup, so a revocation
// by `clearance keys revoke` is seen by a running server on its next request.
type FileKeys struct {
	path string
	mu   sync.Mutex

	// The parsed file, reused while the file is the same inode: every writer
	// renames a new file into place, so a change always shows as a new inode.
	cacheMu  sync.Mutex
	cached   keysDoc
	cachedFI os.FileInfo
}

// OpenFileKeys uses dataDir/api-keys.json (created on first write).
func OpenFileKeys(dataDir string) (*FileKeys, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	return &FileKeys{path: filepath.Join(dataDir, keysFile)}, nil
}

type keysDoc struct {
	Keys []KeyRecord `json:"keys"`
}

func (f *FileKeys) read() (keysDoc, error) {
	var d keysDoc
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("api keys: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return d, fmt.Errorf("api keys: %w", err)
	}
	f.cacheMu.Lock()
	defer f.cacheMu.Unlock()
	if f.cachedFI != nil && os.SameFile(f.cachedFI, fi) && f.cachedFI.ModTime().Equal(fi.ModTime()) && f.cachedFI.Size() == fi.Size() {
		return f.cached.clone(), nil
	}
	b, err := io.ReadAll(fh)
	if err != nil {
		return d, fmt.Errorf("api keys: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("api keys %s: %w", f.path, err)
	}
	f.cached, f.cachedFI = d.clone(), fi
	return d, nil
}

// clone copies the record list so callers may edit it.
func (d keysDoc) clone() keysDoc {
	return keysDoc{Keys: slices.Clone(d.Keys)}
}

// update runs fn on the document under both locks and writes the result.
func (f *FileKeys) update(fn func(*keysDoc) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	unlock, err := lockFile(f.path + ".lock")
	if err != nil {
		return fmt.Errorf("api keys lock: %w", err)
	}
	defer unlock()
	d, err := f.read()
	if err != nil {
		return err
	}
	if err := fn(&d); err != nil {
		return err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), keysFile+".tmp*")
	if err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("api keys: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("api keys: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	return nil
}

// Insert adds a record.
func (f *FileKeys) Insert(_ context.Context, r KeyRecord) error {
	return f.update(func(d *keysDoc) error {
		if slices.ContainsFunc(d.Keys, func(x KeyRecord) bool { return x.ID == r.ID }) {
			return fmt.Errorf("api key id %s exists: %w", r.ID, clearance.ErrConflict)
		}
		d.Keys = append(d.Keys, r)
		return nil
	})
}

// Get returns the record with id.
func (f *FileKeys) Get(_ context.Context, id string) (KeyRecord, error) {
	d, err := f.read()
	if err != nil {
		return KeyRecord{}, err
	}
	for _, r := range d.Keys {
		if r.ID == id {
			return r, nil
		}
	}
	return KeyRecord{}, fmt.Errorf("api key %q: %w", id, clearance.ErrNotFound)
}

// List returns the tenant's records ("" = all).
func (f *FileKeys) List(_ context.Context, tenant string) ([]KeyRecord, error) {
	d, err := f.read()
	if err != nil {
		return nil, err
	}
	out := []KeyRecord{}
	for _, r := range d.Keys {
		if tenant == "" || r.Tenant == tenant {
			out = append(out, r)
		}
	}
	return out, nil
}

// Delete removes the tenant's key id.
func (f *FileKeys) Delete(_ context.Context, tenant, id string) error {
	return f.update(func(d *keysDoc) error {
		i := slices.IndexFunc(d.Keys, func(x KeyRecord) bool { return x.ID == id && x.Tenant == tenant })
		if i < 0 {
			return fmt.Errorf("api key %q: %w", id, clearance.ErrNotFound)
		}
		d.Keys = slices.Delete(d.Keys, i, i+1)
		return nil
	})
}

// Touch records the last use of id.
func (f *FileKeys) Touch(_ context.Context, id string, at time.Time) error {
	return f.update(func(d *keysDoc) error {
		for i := range d.Keys {
			if d.Keys[i].ID == id {
				d.Keys[i].LastUsedAt = &at
				return nil
			}
		}
		return fmt.Errorf("api key %q: %w", id, clearance.ErrNotFound)
	})
}

// Close releases nothing: every operation opens the file itself.
func (f *FileKeys) Close() error { return nil }
