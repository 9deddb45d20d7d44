package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Checkpoint replaces the records pruned by retention: the last pruned record's id
// and hash, signed, so the chain stays verifiable from the first kept record.
type Checkpoint struct {
	ID   string    `json:"id"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
	// Records is how many records were pruned in total (the position of the first
	// kept record).
	Records   int64     `json:"records"`
	Created   time.Time `json:"created"`
	PublicKey []byte    `json:"public_key"`
	Signature []byte    `json:"signature,omitempty"`
}

func (c Checkpoint) payload() ([]byte, error) {
	c.Signature = nil
	return json.Marshal(c)
}

// Sign fills PublicKey and Signature.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) error {
	c.PublicKey = key.Public().(ed25519.PublicKey)
	p, err := c.payload()
	if err != nil {
		return err
	}
	c.Signature = ed25519.Sign(key, p)
	return nil
}

// Check verifies the signature. trusted is the key the operator trusts (from the
// key file); nil falls back to the key stored in the checkpoint, which only proves
// the checkpoint was not edited after signing.
func (c *Checkpoint) Check(trusted ed25519.PublicKey) error {
	if len(c.PublicKey) != ed25519.PublicKeySize {
		return errors.New("checkpoint has no valid public key")
	}
	if trusted != nil && !bytes.Equal(trusted, c.PublicKey) {
		return fmt.Errorf("checkpoint signed by key %s, not the trusted key %s", KeyFingerprint(c.PublicKey), KeyFingerprint(trusted))
	}
	p, err := c.payload()
	if err != nil {
		return err
	}
	if !ed25519.Verify(c.PublicKey, p, c.Signature) {
		return errors.New("checkpoint signature does not verify")
	}
	return nil
}

// KeyFingerprint is a short printable id of a public key.
func KeyFingerprint(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// LoadKey reads the checkpoint signing key (a base64 Ed25519 seed). create makes
// one (mode 0600) when the file does not exist.
func LoadKey(path string, create bool) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("audit: checkpoint key %s: not a base64 Ed25519 seed", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func createKey(path string) (ed25519.PrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	if err := WriteFileAtomic(path, []byte(base64.StdEncoding.EncodeToString(seed)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("audit: checkpoint key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// WriteFileAtomic writes a file so that a crash leaves either the old or the new
// content: temporary file, fsync, rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory so a created, renamed or removed entry is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
