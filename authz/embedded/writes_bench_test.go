package embedded_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/embedded"
)

// BenchmarkSQLiteTicketWrites writes ticket#project tuples the way an index run
// does (one engine write per shard of 1,024 tickets) into a fresh sqlite file.
//
//	go test ./authz/embedded -run '^$' -bench SQLiteTicketWrites -benchtime 3x
func BenchmarkSQLiteTicketWrites(b *testing.B) {
	const tickets, shard = 100_000, 1024
	for b.Loop() {
		b.StopTimer()
		e := open(b, embedded.Config{Datastore: embedded.SQLite, DataDir: b.TempDir()})
		b.StartTimer()
		ctx := context.Background()
		for start := 0; start < tickets; start += shard {
			var ws []authz.Tuple
			for i := start; i < min(start+shard, tickets); i++ {
				ws = append(ws, authz.Tuple{User: fmt.Sprintf("project:t%d-p%d", i%4, i%1000), Relation: "project", Object: fmt.Sprintf("ticket:BT-%d", i)})
			}
			if err := e.Write(ctx, ws, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		e.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(tickets)*float64(b.N)/b.Elapsed().Seconds(), "tuples/s")
}
