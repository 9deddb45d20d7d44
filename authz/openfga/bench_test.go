package openfga_test

import (
	"github.com/clearance-dev/clearance/authz"
	"testing"

	"github.com/clearance-dev/clearance/authz/authztest"
	"github.com/clearance-dev/clearance/authz/openfga"
)

// go test ./authz/openfga -run '^$' -bench . -benchtime 2s (server: memory datastore)
func BenchmarkServer(b *testing.B) {
	srv := startServer(b)
	e := newEngine(b, openfga.Config{URL: srv.URL})
	defer e.Close()
	authztest.Bench(b, e)
}

// go test ./authz/openfga -run '^$' -bench Revision (server: memory datastore)
func BenchmarkRevision(b *testing.B) {
	srv := startServer(b)
	authztest.BenchRevision(b, func(b *testing.B) authz.Engine { return newEngine(b, openfga.Config{URL: srv.URL}) })
}
