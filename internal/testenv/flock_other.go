//go:build !unix

package testenv

import "testing"

// lockFile is a no-op where flock is unavailable; the replica tests run on unix.
func lockFile(testing.TB, string) func() { return func() {} }
