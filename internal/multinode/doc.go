// Package multinode holds the multi-node integration test: two `clearance serve`
// replicas built from this tree, on one PostgreSQL (pgvector store, audit log,
// API keys, indexer state) and two `openfga run` servers sharing that database,
// under a load of searches, ticket writes, tuple writes and revocations, with one
// replica and one OpenFGA server killed with SIGKILL half way.
//
// The package has no code of its own: the test starts real processes, so it
// lives apart from the packages it exercises. It needs DATABASE_URL and
// OPENFGA_BIN (`make test` sets both); CLEARANCE_MULTINODE_LOAD sets how long the
// load runs (default 20s).
package multinode
