package filter_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
)

// addTicket indexes one more ticket of the fixture in project.
func (f *fixture) addTicket(t *testing.T, tk retrieval.Ticket) {
	t.Helper()
	ctx := context.Background()
	v, err := f.emb.Embed(ctx, []string{tk.Title + " " + tk.Body})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Upsert(ctx, tk, []retrieval.Chunk{{Text: tk.Body, Vector: v[0]}}); err != nil {
		t.Fatal(err)
	}
}

// An exact error code finds its ticket first in lexical and hybrid mode, under
// the same filters: the payroll ticket anne is blocked on, which holds the
// same code, never comes back, and the audit record shows it denied in the
// lexical arm.
func TestHybridFindsExactTermsUnderTheSameFilters(t *testing.T) {
	f := newFixture(t)
	f.addTicket(t, retrieval.Ticket{ID: "T-1", Tenant: "acme", Project: "apollo", Title: "Login outage",
		Body: "login timeout on the database primary after deploy, client saw ERR_CONN_RESET"})
	f.addTicket(t, retrieval.Ticket{ID: "T-4", Tenant: "acme", Project: "apollo", Title: "Payroll database",
		Body: "payroll database timeout salary data ERR_CONN_RESET ERR_CONN_RESET"})
	pl := f.planner(nil, nil, nil)
	for _, mode := range []filter.Mode{filter.ModeLexical, filter.ModeHybrid} {
		resp := search(t, pl, user("acme", "anne"), filter.Request{Query: "ERR_CONN_RESET", TopK: 3, Mode: mode})
		if len(resp.Results) == 0 || resp.Results[0].TicketID != "T-1" {
			t.Fatalf("%s: results %+v, want T-1 first", mode, resp.Results)
		}
		for _, r := range resp.Results {
			if r.TicketID == "T-4" || r.TenantID != "acme" {
				t.Fatalf("%s: LEAK %s", mode, r.TicketID)
			}
		}
		rec, _ := f.log.Record(resp.AuditID)
		if rec.Plan.Mode != string(mode) {
			t.Fatalf("%s: audit mode %q", mode, rec.Plan.Mode)
		}
		denied := slices.ContainsFunc(rec.Results, func(c audit.Candidate) bool {
			return c.TicketID == "T-4" && c.Decision == audit.DeniedByCheck && (mode == filter.ModeLexical || c.Arm == "lexical")
		})
		if !denied {
			t.Fatalf("%s: T-4 not recorded as denied: %+v", mode, rec.Results)
		}
		if mode == filter.ModeHybrid {
			arms := map[string]bool{}
			for _, c := range rec.Results {
				arms[c.Arm] = true
			}
			if !arms["vector"] || !arms["lexical"] || !arms["fused"] || !slices.Contains(rec.Plan.StorePlans, retrieval.PlanBM25) {
				t.Fatalf("hybrid record lacks an arm: %v, plans %v", arms, rec.Plan.StorePlans)
			}
		}
	}
	// Vector mode on the hashing embedder does not put T-1 first: the reason
	// the lexical arm exists (and the mode actually changes the ranking).
	vec := search(t, pl, user("acme", "anne"), filter.Request{Query: "ERR_CONN_RESET", TopK: 3, Mode: filter.ModeVector})
	rec, _ := f.log.Record(vec.AuditID)
	if rec.Plan.Mode != "vector" || slices.Contains(rec.Plan.StorePlans, retrieval.PlanBM25) {
		t.Fatalf("vector mode read the lexical arm: %+v", rec.Plan)
	}
}

// Hybrid status: complete with k visible, exhausted when fewer exist, one per
// ticket when grouped, ranks among visible chunks only.
func TestHybridStatus(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(nil, nil, nil)
	resp := search(t, pl, user("acme", "bob"), filter.Request{TopK: 2, Mode: filter.ModeHybrid})
	if resp.Status != filter.Complete || len(resp.Results) != 2 || !resp.Exact {
		t.Fatalf("bob top 2: %s %d exact %v", resp.Status, len(resp.Results), resp.Exact)
	}
	resp = search(t, pl, user("acme", "bob"), filter.Request{TopK: 10, Mode: filter.ModeHybrid})
	if resp.Status != filter.Exhausted || !slices.Equal(ids(resp), []string{"T-3", "T-5"}) {
		t.Fatalf("bob top 10: %s %v", resp.Status, ids(resp))
	}
	// A query no ticket holds a term of: the vector arm still ranks everything.
	resp = search(t, pl, user("acme", "bob"), filter.Request{Query: "zzzqqq", TopK: 10, Mode: filter.ModeHybrid})
	if resp.Status != filter.Exhausted || len(resp.Results) != 2 {
		t.Fatalf("no lexical match: %s %v", resp.Status, ids(resp))
	}
	resp = search(t, pl, user("acme", "bob"), filter.Request{Query: "zzzqqq", TopK: 10, Mode: filter.ModeLexical})
	if resp.Status != filter.Exhausted || len(resp.Results) != 0 {
		t.Fatalf("lexical, no match: %s %v", resp.Status, ids(resp))
	}
}

// storeOnly hides the embedded store's lexical index, like Qdrant.
type storeOnly struct{ filter.Store }

func TestLexicalModeOnAStoreWithoutLexicalIndexFails(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(nil, storeOnly{f.store}, nil)
	if pl.DefaultMode() != filter.ModeVector {
		t.Fatalf("default mode %s", pl.DefaultMode())
	}
	for _, mode := range []filter.Mode{filter.ModeLexical, filter.ModeHybrid} {
		_, err := pl.Search(context.Background(), user("acme", "ada"), filter.Request{Query: "database", TopK: 3, Mode: mode})
		if !errors.Is(err, clearance.ErrUnsupported) {
			t.Fatalf("%s on a store without lexical index: %v, want ErrUnsupported", mode, err)
		}
	}
	// The failures were audited.
	n := 0
	for _, rec := range f.log.Records() {
		if rec.Status == "error" && rec.Plan.Mode != "" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d error records with a mode, want 2", n)
	}
	if _, err := pl.Search(context.Background(), user("acme", "ada"), filter.Request{Query: "database", TopK: 3, Mode: "fuzzy"}); !errors.Is(err, clearance.ErrInvalid) {
		t.Fatalf("unknown mode: %v", err)
	}
	if resp := search(t, pl, user("acme", "ada"), filter.Request{}); len(resp.Results) == 0 {
		t.Fatal("vector search on the store without lexical index found nothing")
	}
}

// meetStore makes each arm's read wait for the other's to begin: both meet
// only if the planner reads them at once.
type meetStore struct {
	filter.Store
	lex            retrieval.LexicalSearcher
	vecIn, lexIn   chan struct{}
	vecOnce, lxOne sync.Once
	met            atomic.Int32
}

func (s *meetStore) wait(ctx context.Context, mine *sync.Once, in, other chan struct{}) {
	mine.Do(func() { close(in) })
	select {
	case <-other:
		s.met.Add(1)
	case <-time.After(10 * time.Second): // only a failing test waits this long
	case <-ctx.Done():
	}
}

func (s *meetStore) Search(ctx context.Context, r retrieval.SearchRequest) (retrieval.SearchResult, error) {
	s.wait(ctx, &s.vecOnce, s.vecIn, s.lexIn)
	return s.Store.Search(ctx, r)
}

func (s *meetStore) SearchLexical(ctx context.Context, r retrieval.LexicalRequest) (retrieval.SearchResult, error) {
	s.wait(ctx, &s.lxOne, s.lexIn, s.vecIn)
	return s.lex.SearchLexical(ctx, r)
}

// The two arms of a hybrid search are read at once (a hybrid search waits for
// its slower arm, not for the sum of both), and the answer is the one read in
// turn would give.
func TestHybridReadsBothArmsAtOnce(t *testing.T) {
	f := newFixture(t)
	req := filter.Request{Query: "login timeout", TopK: 3, Mode: filter.ModeHybrid}
	want := search(t, f.planner(nil, nil, nil), user("acme", "anne"), req)
	ms := &meetStore{Store: f.store, lex: f.store, vecIn: make(chan struct{}), lexIn: make(chan struct{})}
	got := search(t, f.planner(nil, ms, nil), user("acme", "anne"), req)
	if ms.met.Load() != 2 {
		t.Fatalf("the arms did not read at once (%d of 2 met the other)", ms.met.Load())
	}
	if len(got.Results) == 0 || !slices.EqualFunc(got.Results, want.Results, func(a, b filter.Result) bool {
		return a.TicketID == b.TicketID && a.Chunk == b.Chunk && a.Score == b.Score
	}) || got.Status != want.Status {
		t.Fatalf("read at once: %s %+v\nwant %s %+v", got.Status, got.Results, want.Status, want.Results)
	}
}

// A ticket only the lexical arm finds, first by a wide margin because it holds
// a very rare term (a customer's name), stays first in hybrid mode over a
// ticket both arms rank moderately for the query's common word. Plain
// reciprocal rank fusion ties the two (lexical rank 1 = 4/3 = vector rank 1 +
// lexical rank 2 at k 2, weights 1/4) and the tie goes by ticket id, or puts
// the common-word ticket first outright with a lighter lexical weight; the
// lexical margin keeps the rare term's ticket first in both.
func TestHybridKeepsAClearLexicalTopHitFirst(t *testing.T) {
	f := newFixture(t)
	// K-1 is short and all about "timeout": the vector arm's first and the
	// lexical arm's second. K-9 holds the rare name in a long text: the lexical
	// arm's first by far, below the vector arm's depth (the fillers).
	f.addTicket(t, retrieval.Ticket{ID: "K-1", Tenant: "acme", Project: "zeus", Title: "Timeout", Body: "timeout"})
	f.addTicket(t, retrieval.Ticket{ID: "K-9", Tenant: "acme", Project: "zeus", Title: "Billing export",
		Body: "customer Nixphadru reported it: the monthly billing export stalls on large invoices, the worker restarts and the ledger reconciliation job skips accounts with pending credit notes"})
	for i, w := range []string{"login", "search", "upload", "report", "cache", "proxy"} {
		f.addTicket(t, retrieval.Ticket{ID: fmt.Sprintf("F-%d", i), Tenant: "acme", Project: "zeus", Title: w + " timeout",
			Body: w + " timeout again on " + w})
	}
	var tuples []authz.Tuple
	for _, id := range []string{"K-1", "K-9", "F-0", "F-1", "F-2", "F-3", "F-4", "F-5"} {
		tuples = append(tuples, authz.Tuple{User: "project:zeus", Relation: "project", Object: "ticket:" + id})
	}
	if err := f.eng.Write(context.Background(), tuples, nil); err != nil {
		t.Fatal(err)
	}
	arm := func(mode filter.Mode) []string {
		resp := search(t, f.planner(nil, nil, nil), user("acme", "bob"), filter.Request{Query: "Nixphadru timeout", TopK: 4, GroupByTicket: true, Mode: mode})
		var out []string
		for _, r := range resp.Results {
			out = append(out, r.TicketID)
		}
		return out
	}
	// The pattern: vector first K-1 without K-9 in its depth; lexical K-9, K-1.
	if v, l := arm(filter.ModeVector), arm(filter.ModeLexical); v[0] != "K-1" || slices.Contains(v, "K-9") || !slices.Equal(l[:2], []string{"K-9", "K-1"}) {
		t.Fatalf("fixture lost its pattern: vector %v, lexical %v", v, l)
	}
	for _, tc := range []struct {
		fc   filter.FusionConfig
		want string
	}{
		{filter.FusionConfig{Depth: 4}, "K-9"},
		{filter.FusionConfig{Depth: 4, K: 2, VectorWeight: 1, LexicalWeight: 3}, "K-9"},
		{filter.FusionConfig{Depth: 4, RanksOnly: true}, "K-1"},
		{filter.FusionConfig{Depth: 4, K: 2, VectorWeight: 1, LexicalWeight: 3, RanksOnly: true}, "K-1"},
	} {
		pl := filter.New(filter.Config{Fusion: tc.fc}, f.eng, f.store, f.emb, f.log)
		resp := search(t, pl, user("acme", "bob"), filter.Request{Query: "Nixphadru timeout", TopK: 4, GroupByTicket: true, Mode: filter.ModeHybrid})
		if len(resp.Results) == 0 || resp.Results[0].TicketID != tc.want || resp.Status != filter.Complete {
			t.Fatalf("%+v: %s %v, want %s first", tc.fc, resp.Status, resp.Results, tc.want)
		}
		rec, _ := f.log.Record(resp.AuditID)
		if margin := slices.ContainsFunc(rec.Plan.Notes, func(n string) bool { return strings.Contains(n, "lexical margin=") }); margin == tc.fc.RanksOnly {
			t.Fatalf("%+v: notes %v", tc.fc, rec.Plan.Notes)
		}
	}
}
