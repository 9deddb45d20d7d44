//go:build unix

package filelog

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive flock on path so two processes never append to one
// chain. The kernel drops it when the process dies, also on kill -9.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit dir is in use by another process (%s): %w", path, err)
	}
	return f, nil
}
