package filelog

import (
	"context"
	"testing"

	"github.com/clearance-dev/clearance/audit/audittest"
)

// BenchmarkAppend: group commit to segment files with fsync.
//
//	go test ./audit/filelog -run '^$' -bench Append -benchtime 2000x
func BenchmarkAppend(b *testing.B) {
	l, err := Open(context.Background(), Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	audittest.BenchAppend(b, l)
}
