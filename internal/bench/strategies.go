package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
)

// batchLimit is the engine's per-call BatchCheck size the strategies count calls
// by (OpenFGA's default is 50).
const batchLimit = 50

// NaivePostFilter is what many RAG integrations do: take the tenant-wide top-N
// and BatchCheck all of them, keeping the first k allowed.
func NaivePostFilter(store retrieval.Store, eng Engine, n int) Strategy {
	return Strategy{Name: fmt.Sprintf("naive post-filter (top-%d)", n), Search: func(ctx context.Context, p authz.Principal, _ string, vec []float32, k int) (Outcome, error) {
		res, err := store.Search(ctx, retrieval.SearchRequest{Vector: vec, Filter: retrieval.Filter{Tenant: p.Tenant, AllProjects: true}, K: n})
		if err != nil {
			return Outcome{}, err
		}
		hits := res.Hits
		allowed, calls, err := checkHits(ctx, eng, p, hits)
		if err != nil {
			return Outcome{}, err
		}
		out := Outcome{EngineCalls: calls, Candidates: len(hits), Status: "exhausted"}
		for _, h := range hits {
			if allowed[h.TicketID] {
				out.Results = append(out.Results, Result{h.TicketID, h.Ordinal, h.Score})
				if len(out.Results) == k {
					out.Status = "complete"
					break
				}
			}
		}
		return out, nil
	}}
}

// ListObjectsOverTickets is the other common pattern: list every ticket the
// principal may view and use the ids as the store filter.
func ListObjectsOverTickets(store retrieval.Store, eng Engine) Strategy {
	return Strategy{Name: "ListObjects over tickets", Search: func(ctx context.Context, p authz.Principal, _ string, vec []float32, k int) (Outcome, error) {
		q := authz.Query{ContextualTuples: p.ContextualTuples()}
		var ids []string
		for id, err := range eng.ListObjects(ctx, q, p.Subject(), p.ViewRelation(), "ticket") {
			if err != nil {
				return Outcome{}, err
			}
			ids = append(ids, id)
		}
		res, err := store.Search(ctx, retrieval.SearchRequest{Vector: vec, Filter: retrieval.Filter{Tenant: p.Tenant, Tickets: ids}, K: k})
		if err != nil {
			return Outcome{}, err
		}
		out := Outcome{EngineCalls: 1, Candidates: len(ids), Status: "exhausted"}
		for _, h := range res.Hits {
			out.Results = append(out.Results, Result{h.TicketID, h.Ordinal, h.Score})
		}
		if len(out.Results) == k {
			out.Status = "complete"
		}
		if !res.Exact {
			out.Status = "partial" // an approximate plan proves neither
		}
		return out, nil
	}}
}

// Floor parts: what any correct search must do at least, measured alone.

// FloorListObjects lists the principal's projects (and direct shares), nothing else.
func FloorListObjects(eng Engine) Strategy {
	return Strategy{Cheap: true, Name: "floor: ListObjects(project)", Search: func(ctx context.Context, p authz.Principal, _ string, _ []float32, _ int) (Outcome, error) {
		f, calls, err := prefilter(ctx, eng, p)
		if err != nil {
			return Outcome{}, err
		}
		return Outcome{EngineCalls: calls, Candidates: len(f.Projects) + len(f.Tickets), Status: "n/a"}, nil
	}}
}

// Floor runs the three floor parts one after the other as one timed query:
// the principal's listing (FloorListObjects), the store scan under it and the
// BatchCheck of its k results. Its percentiles are those of whole queries, so
// it is what a cold search is compared with; the sum of the parts' own
// percentiles (each part's tail on a different query) overstates its p99.
func Floor(store retrieval.Store, eng Engine) Strategy {
	return Strategy{Cheap: true, Name: rowFloor, Search: func(ctx context.Context, p authz.Principal, _ string, vec []float32, k int) (Outcome, error) {
		start := time.Now()
		f, calls, err := prefilter(ctx, eng, p)
		if err != nil {
			return Outcome{}, err
		}
		list := time.Since(start)
		res, err := store.Search(ctx, retrieval.SearchRequest{Vector: vec, Filter: f, K: k})
		if err != nil {
			return Outcome{}, err
		}
		scan := time.Since(start) - list
		_, checkCalls, err := checkHits(ctx, eng, p, res.Hits)
		if err != nil {
			return Outcome{}, err
		}
		total := time.Since(start)
		return Outcome{EngineCalls: calls + checkCalls, Candidates: len(res.Hits), Status: "n/a", Elapsed: total,
			Stages: map[string]float64{"prefilter": ms(list), "search": ms(scan), "check": ms(total - list - scan), "total": ms(total)}}, nil
	}}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// FloorScan runs only the filtered store scan, with the pre-filter computed
// beforehand and not timed.
func FloorScan(store retrieval.Store, eng Engine) Strategy {
	cache := map[string]retrieval.Filter{}
	return Strategy{Cheap: true, Name: "floor: store scan", Search: func(ctx context.Context, p authz.Principal, _ string, vec []float32, k int) (Outcome, error) {
		f, err := cachedPrefilter(ctx, eng, p, cache)
		if err != nil {
			return Outcome{}, err
		}
		start := time.Now()
		res, err := store.Search(ctx, retrieval.SearchRequest{Vector: vec, Filter: f, K: k})
		return Outcome{Candidates: len(res.Hits), Status: "n/a", Elapsed: time.Since(start)}, err
	}}
}

// FloorBatchCheck checks only the k results of the filtered scan, with the scan
// done beforehand and not timed.
func FloorBatchCheck(store retrieval.Store, eng Engine) Strategy {
	cache := map[string]retrieval.Filter{}
	return Strategy{Cheap: true, Name: "floor: BatchCheck(k)", Search: func(ctx context.Context, p authz.Principal, _ string, vec []float32, k int) (Outcome, error) {
		f, err := cachedPrefilter(ctx, eng, p, cache)
		if err != nil {
			return Outcome{}, err
		}
		res, err := store.Search(ctx, retrieval.SearchRequest{Vector: vec, Filter: f, K: k})
		if err != nil {
			return Outcome{}, err
		}
		hits := res.Hits
		start := time.Now()
		_, calls, err := checkHits(ctx, eng, p, hits)
		return Outcome{EngineCalls: calls, Candidates: len(hits), Status: "n/a", Elapsed: time.Since(start)}, err
	}}
}

func cachedPrefilter(ctx context.Context, eng Engine, p authz.Principal, cache map[string]retrieval.Filter) (retrieval.Filter, error) {
	key := p.String()
	if f, ok := cache[key]; ok {
		return f, nil
	}
	f, _, err := prefilter(ctx, eng, p)
	if err == nil {
		cache[key] = f
	}
	return f, err
}

// prefilter is the planner's pre-filter reduced to its engine calls: tenant admins
// skip ListObjects, everyone else lists projects (and users their direct shares).
func prefilter(ctx context.Context, eng Engine, p authz.Principal) (retrieval.Filter, int, error) {
	f := retrieval.Filter{Tenant: p.Tenant}
	q := authz.Query{ContextualTuples: p.ContextualTuples()}
	calls := 0
	if p.Kind == authz.KindUser {
		calls++
		admin, err := eng.Check(ctx, q, authz.Check{User: p.Subject(), Relation: "admin", Object: "tenant:" + p.Tenant})
		if err != nil {
			return f, calls, err
		}
		if admin {
			f.AllProjects = true
			return f, calls, nil
		}
	}
	calls++
	for id, err := range eng.ListObjects(ctx, q, p.Subject(), p.ViewRelation(), "project") {
		if err != nil {
			return f, calls, err
		}
		f.Projects = append(f.Projects, id)
	}
	if p.Kind != authz.KindAgent {
		calls++
		for id, err := range eng.ListObjects(ctx, q, p.Subject(), authz.RelationShared, "ticket") {
			if err != nil {
				return f, calls, err
			}
			f.Tickets = append(f.Tickets, id)
		}
	}
	return f, calls, nil
}

func checkHits(ctx context.Context, eng Engine, p authz.Principal, hits []retrieval.Hit) (map[string]bool, int, error) {
	var checks []authz.Check
	seen := map[string]bool{}
	for _, h := range hits {
		if !seen[h.TicketID] {
			seen[h.TicketID] = true
			checks = append(checks, authz.Check{User: p.Subject(), Relation: p.ViewRelation(), Object: "ticket:" + h.TicketID})
		}
	}
	if len(checks) == 0 {
		return nil, 0, nil
	}
	q := authz.Query{ContextualTuples: p.ContextualTuples(), Consistency: authz.HigherConsistency}
	res, err := eng.BatchCheck(ctx, q, checks)
	if err != nil {
		return nil, 0, err
	}
	allowed := make(map[string]bool, len(checks))
	for i, c := range checks {
		if res[i] {
			allowed[c.Object[len("ticket:"):]] = true
		}
	}
	return allowed, (len(checks) + batchLimit - 1) / batchLimit, nil
}

// Planner sends queries through clearance's planner. With prewarm, each
// principal's first query is run once untimed so the pre-filter cache is warm.
// Engine calls and candidates are read from the planner's audit record in log.
func Planner(name string, pl *filter.Planner, log *filter.MemoryLog, prewarm bool) Strategy {
	warmed := map[string]bool{}
	return Strategy{Cheap: true, Name: name, Search: func(ctx context.Context, p authz.Principal, q string, _ []float32, k int) (Outcome, error) {
		req := filter.Request{Query: q, TopK: k}
		if prewarm && !warmed[p.String()] {
			warmed[p.String()] = true
			if _, err := pl.Search(ctx, p, req); err != nil {
				return Outcome{}, err
			}
		}
		start := time.Now()
		resp, err := pl.Search(ctx, p, req)
		elapsed := time.Since(start)
		if err != nil {
			return Outcome{}, err
		}
		out := Outcome{Status: string(resp.Status), Elapsed: elapsed}
		for _, r := range resp.Results {
			out.Results = append(out.Results, Result{TicketID: r.TicketID, Ordinal: r.Chunk, Score: r.Score})
		}
		if rec, ok := log.Record(resp.AuditID); ok {
			out.Candidates = rec.Plan.Fetched
			out.EngineCalls = plannerCalls(p, rec.Plan)
			out.Stages = map[string]float64{}
			for stage, us := range rec.Latency {
				out.Stages[stage] = float64(us) / 1000
			}
		}
		return out, nil
	}}
}

// plannerCalls estimates the engine calls of one planner search from its audit
// plan: the pre-filter's (none on a cache hit; the admin Check for users; the
// listing of the principal's projects; for users
// and service accounts the listing of direct shares, for agents the read of
// their delegation's grants, and the shares only when one lies outside, which
// the plan shows as direct tickets) plus one BatchCheck per round, more when a
// round checked more than a batch.
func plannerCalls(p authz.Principal, plan audit.Plan) int {
	calls := max(plan.Rounds, (plan.Checked+batchLimit-1)/batchLimit)
	if plan.CachedDecisions > 0 {
		// Decisions the cache answered cost no call; a round that still needed
		// the engine costs at least one.
		asked := plan.Checked - plan.CachedDecisions
		calls = max(min(plan.Rounds, asked), (asked+batchLimit-1)/batchLimit)
	}
	if plan.CacheHit {
		return calls
	}
	if p.Kind == authz.KindUser {
		calls++ // is the user a tenant admin?
	}
	if plan.Path != "tenant_admin" {
		calls++ // ListObjects(project) of the principal
		if p.Kind != authz.KindAgent || plan.DirectTickets > 0 {
			calls++ // ListObjects(shared ticket)
		}
		if p.Kind == authz.KindAgent {
			calls++ // Read of the delegation's grants
		}
	}
	return calls
}
