package embedded_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/embedded"
)

// sqliteFDs counts this process's descriptors open on the sqlite file, its WAL
// and its shared-memory index.
func sqliteFDs(t *testing.T, path string) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("counting descriptors needs /proc")
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(target, path) {
			n++
		}
	}
	return n
}

// TestSQLitePoolIsBounded: 32 concurrent BatchChecks of 50 tickets each (the
// post-filter of 32 searches at once) never hold more sqlite
// connections than MaxOpenConns, every call answers, and the goroutines they
// started end. Before the pool was bounded the same load opened a connection
// per concurrent query: thousands of descriptors (issue 14).
func TestSQLitePoolIsBounded(t *testing.T) {
	const maxOpen, calls = 4, 32
	e := open(t, embedded.Config{DataDir: t.TempDir(), MaxOpenConns: maxOpen,
		// Waiting for a connection is the point; only the bound is asserted.
		RequestTimeout: time.Minute})
	defer e.Close()
	path := e.SQLitePath()
	ctx := context.Background()
	var tuples []authz.Tuple
	for i := range 400 {
		p := fmt.Sprintf("project:p%d", i%20)
		tuples = append(tuples, authz.Tuple{User: p, Relation: "project", Object: fmt.Sprintf("ticket:T-%d", i)})
	}
	for i := range 20 {
		tuples = append(tuples,
			authz.Tuple{User: "tenant:acme", Relation: "tenant", Object: fmt.Sprintf("project:p%d", i)},
			authz.Tuple{User: "user:u" + fmt.Sprint(i%5), Relation: "member", Object: fmt.Sprintf("project:p%d", i)})
	}
	if err := e.Write(ctx, tuples, nil); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()

	stop := make(chan struct{})
	peak := make(chan int, 1)
	go func() {
		p := 0
		for {
			p = max(p, sqliteFDs(t, path))
			select {
			case <-stop:
				peak <- p
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			checks := make([]authz.Check, 50)
			for j := range checks {
				checks[j] = authz.Check{User: fmt.Sprintf("user:u%d", i%5), Relation: authz.RelationCanView, Object: fmt.Sprintf("ticket:T-%d", (i*7+j)%400)}
			}
			if _, err := e.BatchCheck(ctx, authz.Query{Consistency: authz.HigherConsistency}, checks); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Errorf("batch check: %v", err)
	}
	// Three descriptors per connection: the file, -wal and -shm.
	if p := <-peak; p > 3*maxOpen {
		t.Errorf("peak %d descriptors on %s; want at most %d (%d connections)", p, path, 3*maxOpen, maxOpen)
	} else {
		t.Logf("peak %d descriptors on the sqlite file (limit %d connections)", p, maxOpen)
	}
	for end := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base+2 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > base+2 {
		t.Errorf("%d goroutines after the checks; %d before", g, base)
	}
}
