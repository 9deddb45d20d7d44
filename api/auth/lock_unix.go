//go:build unix

package auth

import (
	"os"
	"syscall"
)

// lockFile takes a blocking exclusive flock on path for one read-modify-write of
// the key file, so a CLI revoke and the server's last-used update never undo
// each other.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
