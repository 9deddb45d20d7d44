package filter_test

import (
	"context"
	"errors"
	"iter"
	"slices"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
)

// faultEngine wraps the real engine and injects failures.
type faultEngine struct {
	filter.Engine
	listErr    map[string]error // by relation
	truncate   map[string]bool  // by relation: yield one object, then ErrTruncated
	batchErr   error
	postOnly   bool // batchErr / batchShort apply to the post-filter only, not the admin check
	batchShort bool // answer one result too few
	block      bool // every call waits for the context
}

func (e *faultEngine) ListObjects(ctx context.Context, q authz.Query, user, relation, typ string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		switch {
		case e.block:
			<-ctx.Done()
			yield("", errors.Join(authz.ErrUnavailable, ctx.Err()))
		case e.listErr[relation] != nil:
			yield("", e.listErr[relation])
		case e.truncate[relation]:
			for id, err := range e.Engine.ListObjects(ctx, q, user, relation, typ) {
				if err != nil || !yield(id, nil) {
					return
				}
				break
			}
			yield("", authz.ErrTruncated)
		default:
			for id, err := range e.Engine.ListObjects(ctx, q, user, relation, typ) {
				if !yield(id, err) {
					return
				}
			}
		}
	}
}

func (e *faultEngine) BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error) {
	if e.block {
		<-ctx.Done()
		return nil, errors.Join(authz.ErrUnavailable, ctx.Err())
	}
	if !e.postOnly || checks[0].Relation != "admin" {
		if e.batchErr != nil {
			return nil, e.batchErr
		}
		if e.batchShort {
			res, err := e.Engine.BatchCheck(ctx, q, checks)
			if err != nil {
				return nil, err
			}
			return res[:len(res)-1], nil
		}
	}
	return e.Engine.BatchCheck(ctx, q, checks)
}

type faultStore struct {
	filter.Store
	err error
}

func (s faultStore) Search(context.Context, retrieval.SearchRequest) (retrieval.SearchResult, error) {
	return retrieval.SearchResult{}, s.err
}

func (s faultStore) Get(context.Context, string) (retrieval.Ticket, error) {
	return retrieval.Ticket{}, s.err
}

// SearchLexical fails too, so a hybrid or lexical search meets the same fault
// (a store without the method would answer ErrUnsupported instead).
func (s faultStore) SearchLexical(context.Context, retrieval.LexicalRequest) (retrieval.SearchResult, error) {
	return retrieval.SearchResult{}, s.err
}

type faultEmbedder struct{}

func (faultEmbedder) Embed(context.Context, []string) ([][]float32, error) {
	return nil, errors.New("embedding server: connection refused")
}

type faultLog struct{}

func (faultLog) Append(context.Context, *audit.Record) error { return errors.New("disk full") }

// TestFailClosed: every backend failure is an error wrapping ErrUnavailable with no
// results, for every principal kind and every search mode, and the failure
// itself is audited.
func TestFailClosed(t *testing.T) {
	f := newFixture(t)
	boom := errors.New("connection reset")
	sa := authz.Principal{Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "sa-ci"}
	principals := []authz.Principal{user("acme", "anne"), user("acme", "ada"), agent("acme", "anne", "copilot"), sa}
	cases := []struct {
		name string
		pl   func() *filter.Planner
		// admin: whether the tenant admin path reaches the failing call
		skipAdmin bool
	}{
		{"list projects", func() *filter.Planner {
			return f.planner(&faultEngine{Engine: f.eng, listErr: map[string]error{"can_view": boom, "agent_can_view": boom}}, nil, nil)
		}, true},
		{"list shared tickets", func() *filter.Planner {
			return f.planner(&faultEngine{Engine: f.eng, listErr: map[string]error{"shared": boom}}, nil, nil)
		}, true},
		{"batch check", func() *filter.Planner {
			return f.planner(&faultEngine{Engine: f.eng, batchErr: boom}, nil, nil)
		}, false},
		{"batch check fails on the post-filter", func() *filter.Planner {
			return f.planner(&faultEngine{Engine: f.eng, batchErr: authz.ErrUnavailable, postOnly: true}, nil, nil)
		}, false},
		{"batch check answers short", func() *filter.Planner {
			return f.planner(&faultEngine{Engine: f.eng, batchShort: true, postOnly: true}, nil, nil)
		}, false},
		{"store", func() *filter.Planner { return f.planner(nil, faultStore{f.store, retrieval.ErrUnavailable}, nil) }, false},
		{"store plain error", func() *filter.Planner { return f.planner(nil, faultStore{f.store, boom}, nil) }, false},
		{"embedder", func() *filter.Planner { return filter.New(filter.Config{}, f.eng, f.store, faultEmbedder{}, f.log) }, false},
		{"audit log", func() *filter.Planner { return f.planner(nil, nil, faultLog{}) }, false},
	}
	for _, tc := range cases {
		for _, p := range principals {
			for _, mode := range []filter.Mode{filter.ModeVector, filter.ModeLexical, filter.ModeHybrid} {
				if tc.skipAdmin && p.User == "ada" {
					continue
				}
				if tc.name == "embedder" && mode == filter.ModeLexical {
					continue // a lexical search embeds nothing
				}
				before := len(f.log.Records())
				resp, err := tc.pl().Search(context.Background(), p, filter.Request{Query: "database timeout", TopK: 3, Mode: mode})
				if !errors.Is(err, clearance.ErrUnavailable) || resp.Results != nil {
					t.Errorf("%s as %s, mode %s: %d results, err %v; want ErrUnavailable and nothing", tc.name, p, mode, len(resp.Results), err)
					continue
				}
				if tc.name == "audit log" {
					continue
				}
				recs := f.log.Records()
				if len(recs) != before+1 || recs[len(recs)-1].Status != "error" || recs[len(recs)-1].Error == "" {
					t.Errorf("%s as %s, mode %s: failure not audited", tc.name, p, mode)
				}
			}
		}
	}
}

func TestTimeoutFailsClosed(t *testing.T) {
	f := newFixture(t)
	pl := f.planner(&faultEngine{Engine: f.eng, block: true}, nil, nil)
	for _, p := range []authz.Principal{user("acme", "anne"), agent("acme", "anne", "copilot")} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		resp, err := pl.Search(ctx, p, filter.Request{Query: "database", TopK: 3})
		cancel()
		if !errors.Is(err, clearance.ErrUnavailable) || resp.Results != nil {
			t.Errorf("%s: %v, %d results", p, err, len(resp.Results))
		}
		ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err = pl.Get(ctx, p, "T-1")
		cancel()
		if !errors.Is(err, clearance.ErrUnavailable) {
			t.Errorf("get as %s: %v", p, err)
		}
	}
}

func TestGetFailsClosed(t *testing.T) {
	f := newFixture(t)
	for name, pl := range map[string]*filter.Planner{
		"check": f.planner(&faultEngine{Engine: f.eng, batchErr: errors.New("boom")}, nil, nil),
		"store": f.planner(nil, faultStore{f.store, errors.New("boom")}, nil),
		"audit": f.planner(nil, nil, faultLog{}),
	} {
		got, err := pl.Get(context.Background(), user("acme", "anne"), "T-1")
		if !errors.Is(err, clearance.ErrUnavailable) || got.Ticket.ID != "" {
			t.Errorf("%s: %+v, %v", name, got, err)
		}
	}
}

// TestTruncatedListingFallsBack: a listing cut short switches to the
// post-filter-only path, records it, and still answers exactly what the full
// pre-filter answers.
func TestTruncatedListingFallsBack(t *testing.T) {
	f := newFixture(t)
	full := f.planner(nil, nil, &filter.MemoryLog{})
	sa := authz.Principal{Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "sa-ci"}
	for _, rel := range []string{"can_view", "agent_can_view", "shared"} {
		pl := f.planner(&faultEngine{Engine: f.eng, truncate: map[string]bool{rel: true}}, nil, nil)
		for _, p := range []authz.Principal{user("acme", "anne"), user("acme", "bob"), user("acme", "carl"), agent("acme", "anne", "copilot"), sa} {
			for _, req := range []filter.Request{{TopK: 10}, {TopK: 1}, {TopK: 10, Filters: filter.Filters{Projects: []string{"zeus"}}}} {
				want := search(t, full, p, req)
				got := search(t, pl, p, req)
				if !slices.Equal(ids(got), ids(want)) || got.Status != want.Status {
					t.Errorf("%s truncated, %s %+v: %v %s, want %v %s", rel, p, req, ids(got), got.Status, ids(want), want.Status)
				}
				rec, _ := f.log.Record(got.AuditID)
				// Only the listing this principal makes is cut short.
				hit := (rel == "can_view") == (p.Kind != authz.KindAgent) || (rel != "can_view" && rel != "agent_can_view")
				if hit && (rec.Plan.Path != filter.PathPostfilterOnly || !rec.Plan.Truncated) {
					t.Errorf("%s truncated, %s: plan %+v", rel, p, rec.Plan)
				}
			}
		}
	}
}
