package pglog

import (
	"context"
	"testing"

	"github.com/clearance-dev/clearance/audit/audittest"
	"github.com/clearance-dev/clearance/internal/testenv"
)

// BenchmarkAppend: group commit to PostgreSQL, one transaction per batch.
//
//	go test ./audit/pglog -run '^$' -bench Append -benchtime 2000x
func BenchmarkAppend(b *testing.B) {
	l, err := Open(context.Background(), Config{URL: testenv.DatabaseURL(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	audittest.BenchAppend(b, l)
}
