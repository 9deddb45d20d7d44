package openfga_test

import (
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
