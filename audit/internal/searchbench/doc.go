// Package searchbench holds the benchmark of search latency with and without the
// durable audit append (its only code is in the test file).
package searchbench
