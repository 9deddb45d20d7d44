package filter_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	authzembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/filter"
)

var leakQueries = flag.Int("leak.queries", 1500, "queries of the differential leak test (spread over several random orgs)")

func memoryEngine(t testing.TB) *authzembedded.Engine {
	t.Helper()
	eng, err := authzembedded.New(context.Background(), authzembedded.Config{Datastore: authzembedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng
}

// TestDifferentialLeak runs random principals' random searches over random orgs
// with random tuple changes between queries, and checks every answer against the
// reference evaluator: no result the reference denies, narrowing respected, and
// (while engine and index agree) exactly the reference's visible top-k.
func TestDifferentialLeak(t *testing.T) {
	const orgs = 4
	perOrg := max(1, *leakQueries/orgs)
	var queries, compared, hitSum, wantSum, partial, results, drifted int
	var cachedHits, cachedMisses uint64
	modes := []filter.Mode{filter.ModeVector, filter.ModeLexical, filter.ModeHybrid}
	modeRuns := map[filter.Mode]int{}
	eng := memoryEngine(t)
	for seed := range uint64(orgs) {
		w := newWorld(t, eng, seed+1, 40)
		log := &filter.MemoryLog{}
		// Three planners over the same org: the default one, one whose listings are
		// always cut short (post-filter-only path), and one with a tiny budget
		// (partial answers, many rounds).
		planners := []*filter.Planner{
			filter.New(filter.Config{}, eng, w.store, w.emb, log),
			filter.New(filter.Config{}, revFault{&faultEngine{Engine: eng, truncate: map[string]bool{"can_view": true, "agent_can_view": true}}, eng}, w.store, w.emb, log),
			filter.New(filter.Config{MinFetch: 1, MaxRounds: 3, MaxCandidates: 12}, eng, w.store, w.emb, log),
		}
		var last authz.Principal
		lastPlanner := 0
		for q := range perOrg {
			pi := q % len(planners)
			if w.rng.IntN(2) == 0 {
				for range 1 + w.rng.IntN(3) {
					w.mutate()
				}
			}
			if w.rng.IntN(3) == 0 {
				w.repair()
			}
			// Half the time the previous principal asks again, so that the
			// decision cache answers (when nothing was written in between) or is
			// invalidated (when something was).
			p, req := last, w.request()
			if q == 0 || w.rng.IntN(2) == 0 {
				p = w.principal()
			} else {
				pi = lastPlanner
			}
			last, lastPlanner = p, pi
			pl := planners[pi]
			// Every mode runs: the leak and shape checks hold for all of them;
			// the ranking is compared with the reference in vector mode, whose
			// scores do not depend on the filter (BM25's statistics are those
			// of the pre-filter's rows, which the reference does not model).
			req.Mode = modes[(q/len(planners))%len(modes)]
			modeRuns[req.Mode]++
			resp, err := pl.Search(context.Background(), p, req)
			queries++
			if err != nil {
				t.Fatalf("%s %+v: %v", p, req, err)
			}
			now := time.Now()
			for _, r := range resp.Results {
				if r.TenantID != p.Tenant || !w.ref.visible(p, r.TicketID, now) {
					t.Fatalf("LEAK: %s received %s (tenant %s, project %s) for %+v", p, r.TicketID, r.TenantID, r.ProjectID, req)
				}
			}
			results += len(resp.Results)
			checkGet(t, w, pl, p)
			checkShape(t, p, req, resp)
			checkAudit(t, log, resp)
			if resp.Status == filter.Partial {
				partial++
			}
			if len(w.drift) > 0 {
				drifted++
				continue
			}
			if req.Mode != filter.ModeVector {
				continue
			}
			want := w.expected(p, req)
			// The planner walks the ranking in order, so even a partial answer is
			// the head of the reference's answer.
			if !sameRanking(resp.Results, want[:min(len(want), len(resp.Results))]) {
				t.Fatalf("%s %+v: got %s, reference %s", p, req, describe(resp.Results), describe(want))
			}
			if resp.Status != filter.Partial && !sameRanking(resp.Results, want) {
				t.Fatalf("%s %+v (%s): got %s, reference %s", p, req, resp.Status, describe(resp.Results), describe(want))
			}
			if pi == 2 {
				continue // the tiny budget is expected to lose recall
			}
			compared++
			wantSum += len(want)
			hitSum += overlap(resp.Results, want)
			if resp.Status == filter.Exhausted && len(want) == req.TopK && len(resp.Results) < req.TopK {
				t.Fatalf("%s: exhausted with %d results but the reference has %d", p, len(resp.Results), len(want))
			}
		}
		for _, pl := range planners {
			s := pl.DecisionCacheStats()
			cachedHits += s.Hits
			cachedMisses += s.Misses
		}
	}
	recall := 1.0
	if wantSum > 0 {
		recall = float64(hitSum) / float64(wantSum)
	}
	t.Logf("%d queries (%d with index drift, leak-checked only), %d results, recall@k %.4f over %d compared queries (default and post-filter-only planners), %d partial (tiny-budget planner)",
		queries, drifted, results, recall, compared, partial)
	t.Logf("queries by mode: %v", modeRuns)
	for _, m := range modes {
		if modeRuns[m] == 0 {
			t.Errorf("mode %s never ran", m)
		}
	}
	t.Logf("decision cache: %d of %d checked tickets answered from the cache", cachedHits, cachedHits+cachedMisses)
	if recall != 1 {
		t.Errorf("recall@k %.4f, want 1", recall)
	}
	if cachedHits == 0 {
		t.Errorf("the decision cache was never used")
	}
}

// checkGet: a single-ticket read of a random ticket answers what the reference
// says (tenant, token narrowing, and every check: a minted key's minter too).
func checkGet(t *testing.T, w *world, pl *filter.Planner, p authz.Principal) {
	t.Helper()
	tk := pick(w.rng, w.tickets)
	_, err := pl.Get(context.Background(), p, tk.id)
	if err != nil && !errors.Is(err, filter.ErrNotFound) {
		t.Fatalf("get %s as %s: %v", tk.id, p, err)
	}
	want := tk.tenant == p.Tenant && (p.Narrowing == nil || contains(p.Narrowing.Projects, tk.project)) && w.ref.visible(p, tk.id, time.Now())
	if got := err == nil; got && !want || got != want && !w.drift[tk.id] {
		t.Fatalf("get %s as %s: visible %v, reference %v", tk.id, p, got, want)
	}
}

// checkShape: at most k results, one per chunk (per ticket when grouped), in
// ranking order, narrowing respected, status consistent with the count.
func checkShape(t *testing.T, p authz.Principal, req filter.Request, resp filter.Response) {
	t.Helper()
	if len(resp.Results) > req.TopK {
		t.Fatalf("%d results for top_k %d", len(resp.Results), req.TopK)
	}
	if resp.Status == filter.Complete && len(resp.Results) != req.TopK {
		t.Fatalf("complete with %d of %d", len(resp.Results), req.TopK)
	}
	seen := map[string]bool{}
	for i, r := range resp.Results {
		key := fmt.Sprintf("%s/%d", r.TicketID, r.Chunk)
		if req.GroupByTicket {
			key = r.TicketID
		}
		if seen[key] {
			t.Fatalf("duplicate %s", key)
		}
		seen[key] = true
		if i > 0 && r.Score > resp.Results[i-1].Score {
			t.Fatalf("results out of order at %d", i)
		}
		for _, list := range [][]string{req.Filters.Projects, req.Intent.Projects} {
			if len(list) > 0 && !contains(list, r.ProjectID) {
				t.Fatalf("%s: result in %s outside the narrowing %v", p, r.ProjectID, list)
			}
		}
		if p.Narrowing != nil && !contains(p.Narrowing.Projects, r.ProjectID) {
			t.Fatalf("%s: result in %s outside the token narrowing %v", p, r.ProjectID, p.Narrowing.Projects)
		}
	}
}

// checkAudit: the answer's record exists and agrees with it.
func checkAudit(t *testing.T, log *filter.MemoryLog, resp filter.Response) {
	t.Helper()
	rec, ok := log.Record(resp.AuditID)
	if !ok {
		t.Fatalf("no audit record %q", resp.AuditID)
	}
	returned := 0
	for _, c := range rec.Results {
		if c.Decision == audit.Returned {
			returned++
		}
	}
	if rec.Status != string(resp.Status) || returned != len(resp.Results) || rec.ModelID == "" || rec.Consistency != "HIGHER_CONSISTENCY" {
		t.Fatalf("audit record disagrees: status %s/%s, returned %d/%d, model %q, consistency %q",
			rec.Status, resp.Status, returned, len(resp.Results), rec.ModelID, rec.Consistency)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func overlap(got, want []filter.Result) int {
	in := map[string]bool{}
	for _, r := range got {
		in[fmt.Sprintf("%s/%d", r.TicketID, r.Chunk)] = true
	}
	n := 0
	for _, r := range want {
		if in[fmt.Sprintf("%s/%d", r.TicketID, r.Chunk)] {
			n++
		}
	}
	return n
}

func sameRanking(got, want []filter.Result) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].TicketID != want[i].TicketID || got[i].Chunk != want[i].Chunk {
			return false
		}
	}
	return true
}

func describe(rs []filter.Result) string {
	s := "["
	for _, r := range rs {
		s += fmt.Sprintf(" %s/%d(%.4f)", r.TicketID, r.Chunk, r.Score)
	}
	return s + " ]"
}
