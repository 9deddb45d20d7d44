//go:build unix

package dirlock

import (
	"fmt"
	"os"
	"syscall"
)

// Acquire takes an exclusive, non-blocking flock on the file at path (created if
// missing). The kernel drops it when the process dies, also on kill -9, so a stale
// lock never outlives its owner. Close the returned file to release it.
func Acquire(path, what string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is in use by another process (%s): %w", what, path, err)
	}
	return f, nil
}
