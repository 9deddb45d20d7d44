//go:build !unix

package auth

// lockFile is a no-op where flock is unavailable (the process mutex still holds).
func lockFile(string) (func(), error) { return func() {}, nil }
