//go:build unix

package testenv

import (
	"os"
	"syscall"
	"testing"
)

// lockFile blocks until it holds an exclusive lock on path, shared by every
// test process on the machine, and returns its release.
func lockFile(t testing.TB, path string) func() {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() { f.Close() } // closing the descriptor releases the lock
}
