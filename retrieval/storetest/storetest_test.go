package storetest_test

import (
	"cmp"
	"context"
	"iter"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/storetest"
)

// TestSuiteOnBruteForceStore runs the suite against the simplest correct store,
// so a failure here is a bug in the suite, not in a backend.
func TestSuiteOnBruteForceStore(t *testing.T) {
	storetest.Run(t, openBrute(""), storetest.Options{Reopen: reopenBrute})
}

// bugs are deliberate defects; the suite must catch each one.
var bugs = map[string]string{
	"tie-order":         "TiesOrderedByTicketAndOrdinal",
	"keep-old-chunks":   "UpsertReplacesChunks",
	"torn-upsert":       "ConcurrentReadersSeeWholeTickets",
	"ignore-tenant":     "TenantIsolation",
	"empty-matches":     "EmptyFilterMatchesNothing",
	"offset-off":        "PagingWithoutGapsOrDuplicates",
	"forget-on-close":   "ReopenAfterClose",
	"accept-any-meta":   "ReopenWithOtherModelOrDim",
	"no-dim-check":      "InvalidInputWritesNothing",
	"move-keeps-old":    "Move",
	"no-plan":           "TopKMatchesBruteForce",
	"hnsw-claims-exact": "TopKMatchesBruteForce",
}

// TestSuiteCatchesBrokenStores runs the suite in a child process against stores
// with one deliberate defect each and expects the named subtest to fail.
func TestSuiteCatchesBrokenStores(t *testing.T) {
	if os.Getenv("STORETEST_BUG") != "" {
		t.Skip("child process")
	}
	for bug, subtest := range bugs {
		t.Run(bug, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestBrokenStore$", "-test.count=1")
			cmd.Env = append(os.Environ(), "STORETEST_BUG="+bug)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("suite passed a store with bug %q:\n%s", bug, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestBrokenStore/"+subtest) {
				t.Fatalf("bug %q: subtest %s did not fail:\n%s", bug, subtest, out)
			}
		})
	}
}

// TestBrokenStore is the child of TestSuiteCatchesBrokenStores.
func TestBrokenStore(t *testing.T) {
	bug := os.Getenv("STORETEST_BUG")
	if bug == "" {
		t.Skip("run by TestSuiteCatchesBrokenStores")
	}
	storetest.Run(t, openBrute(bug), storetest.Options{Reopen: reopenBrute})
}

func openBrute(bug string) storetest.Opener {
	return func(t *testing.T, meta retrieval.IndexMeta) retrieval.Store {
		return &bruteStore{bug: bug, meta: meta, disk: &disk{meta: meta, tickets: map[string]retrieval.Ticket{}, chunks: map[string][]retrieval.Chunk{}}}
	}
}

// reopenBrute opens the "disk" of a closed brute store again.
func reopenBrute(t *testing.T, closed retrieval.Store, meta retrieval.IndexMeta) (retrieval.Store, error) {
	old := closed.(*bruteStore)
	if old.disk.meta != meta && old.bug != "accept-any-meta" {
		return nil, retrieval.ErrIndexMismatch
	}
	d := old.disk
	if old.bug == "forget-on-close" {
		d = &disk{meta: meta, tickets: map[string]retrieval.Ticket{}, chunks: map[string][]retrieval.Chunk{}}
	}
	return &bruteStore{bug: old.bug, meta: meta, disk: d}, nil
}

type disk struct {
	meta    retrieval.IndexMeta
	tickets map[string]retrieval.Ticket
	chunks  map[string][]retrieval.Chunk
}

type bruteStore struct {
	bug  string
	meta retrieval.IndexMeta
	mu   sync.RWMutex
	*disk
}

func (s *bruteStore) Upsert(_ context.Context, t retrieval.Ticket, cs []retrieval.Chunk) error {
	if t.ID == "" {
		return clearance.Invalid("id", "empty")
	}
	if t.Tenant == "" {
		return clearance.Invalid("tenant", "empty")
	}
	for _, c := range cs {
		if len(c.Vector) != s.meta.Dim && s.bug != "no-dim-check" {
			return clearance.Invalid("vector", "dimension %d, index has %d", len(c.Vector), s.meta.Dim)
		}
	}
	if s.bug == "torn-upsert" { // two steps, readers may see the gap
		s.mu.Lock()
		delete(s.chunks, t.ID)
		s.mu.Unlock()
		// A gap long enough for the suite's readers to fall into on a loaded
		// machine: a bare Gosched was missed under CI's load.
		time.Sleep(time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tickets[t.ID] = t
	if s.bug == "keep-old-chunks" && len(s.chunks[t.ID]) > len(cs) {
		cs = append(slices.Clone(cs), s.chunks[t.ID][len(cs):]...)
	}
	s.chunks[t.ID] = slices.Clone(cs)
	return nil
}

func (s *bruteStore) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tickets, id)
	delete(s.chunks, id)
	return nil
}

func (s *bruteStore) Move(_ context.Context, id, project string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	if !ok {
		return retrieval.ErrNotFound
	}
	if s.bug == "move-keeps-old" {
		return nil
	}
	t.Project = project
	s.tickets[id] = t
	return nil
}

func (s *bruteStore) Get(_ context.Context, id string) (retrieval.Ticket, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.tickets[id]
	if !ok {
		return t, retrieval.ErrNotFound
	}
	return t, nil
}

func (s *bruteStore) matches(t retrieval.Ticket, f retrieval.Filter) bool {
	if s.bug == "ignore-tenant" && len(f.Tickets) > 0 {
		return slices.Contains(f.Tickets, t.ID)
	}
	if s.bug == "empty-matches" && !f.AllProjects && len(f.Projects) == 0 && len(f.Tickets) == 0 {
		return t.Tenant == f.Tenant
	}
	return f.Tenant != "" && t.Tenant == f.Tenant &&
		(f.AllProjects || slices.Contains(f.Projects, t.Project) || slices.Contains(f.Tickets, t.ID))
}

func (s *bruteStore) Search(ctx context.Context, r retrieval.SearchRequest) (retrieval.SearchResult, error) {
	hits, err := s.search(ctx, r)
	switch s.bug {
	case "no-plan":
		return retrieval.SearchResult{Hits: hits, Exact: true}, err
	case "hnsw-claims-exact":
		return retrieval.SearchResult{Hits: hits, Plan: retrieval.PlanHNSW, Exact: true}, err
	}
	return retrieval.SearchResult{Hits: hits, Plan: retrieval.PlanExact, Exact: true}, err
}

func (s *bruteStore) search(_ context.Context, r retrieval.SearchRequest) ([]retrieval.Hit, error) {
	if len(r.Vector) != s.meta.Dim {
		return nil, clearance.Invalid("vector", "dimension %d, index has %d", len(r.Vector), s.meta.Dim)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var hits []retrieval.Hit
	for id, t := range s.tickets {
		if !s.matches(t, r.Filter) {
			continue
		}
		for _, c := range s.chunks[id] {
			var d float32
			for i := range c.Vector {
				d += c.Vector[i] * r.Vector[i]
			}
			hits = append(hits, retrieval.Hit{TicketID: id, Tenant: t.Tenant, Project: t.Project, Title: t.Title, Ordinal: c.Ordinal, Text: c.Text, Score: d})
		}
	}
	slices.SortFunc(hits, func(a, b retrieval.Hit) int {
		if s.bug == "tie-order" {
			return cmp.Compare(b.Score, a.Score)
		}
		return cmp.Or(cmp.Compare(b.Score, a.Score), strings.Compare(a.TicketID, b.TicketID), cmp.Compare(a.Ordinal, b.Ordinal))
	})
	if s.bug == "offset-off" && r.Offset > 0 {
		r.Offset--
	}
	if r.Offset >= len(hits) {
		return nil, nil
	}
	return hits[r.Offset:min(len(hits), r.Offset+r.K)], nil
}

func (s *bruteStore) Count(_ context.Context, f retrieval.Filter) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for id, t := range s.tickets {
		if s.matches(t, f) {
			n += len(s.chunks[id])
		}
	}
	return n, nil
}

func (s *bruteStore) Tickets(context.Context) iter.Seq2[retrieval.TicketRef, error] {
	return func(yield func(retrieval.TicketRef, error) bool) {
		s.mu.RLock()
		var refs []retrieval.TicketRef
		for id, t := range s.tickets {
			refs = append(refs, retrieval.TicketRef{ID: id, Tenant: t.Tenant, Project: t.Project, UpdatedAt: t.UpdatedAt, ContentHash: t.ContentHash, Chunks: len(s.chunks[id])})
		}
		s.mu.RUnlock()
		for _, r := range refs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

func (s *bruteStore) Stats(context.Context) (retrieval.Stats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, cs := range s.chunks {
		n += len(cs)
	}
	return retrieval.Stats{Tickets: len(s.tickets), Chunks: n, Dim: s.meta.Dim, Model: s.meta.Model, Backend: "brute"}, nil
}

func (s *bruteStore) Close() error { return nil }
