//go:build unix

package dirlock

import (
	"path/filepath"
	"testing"
)

func TestSecondHolderRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "LOCK")
	f, err := Acquire(path, "test dir")
	if err != nil {
		t.Fatal(err)
	}
	// flock is per open file description: a second open in this process conflicts
	// like another process would.
	if g, err := Acquire(path, "test dir"); err == nil {
		g.Close()
		t.Fatal("second Acquire succeeded while the lock is held")
	}
	f.Close()
	g, err := Acquire(path, "test dir")
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	g.Close()
}
