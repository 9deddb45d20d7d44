// Package dirlock keeps two processes from writing one data directory (the
// embedded vector store, the audit log) at the same time.
package dirlock
