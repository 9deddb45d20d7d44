//go:build !unix

package dirlock

import "os"

// Acquire only creates the lock file where flock is unavailable.
func Acquire(path, _ string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
