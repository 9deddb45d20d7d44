package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
)

// The flow check's benchmark (SPEC 13): flow checks at bench scale next to the
// floor, one ListUsers of the destination alone.

// FlowOrg is the flow benchmark's tenant ("fb"), sized by the corpus: a ticket
// per two chunks in projects of 125 tickets, a user per 25 chunks (100k chunks:
// 50,000 tickets, 400 projects, 4,000 users) in teams of 50 nested in
// departments of ten teams and in one company-wide team, one company-wide
// project everyone reads (the seed's acme-docs), 5 tenant admins, 3 service
// accounts, shares and blocks (a tenth of the blocks on teams). It lives beside
// the search org (another tenant) in the same store.
type FlowOrg struct {
	Tuples   []authz.Tuple
	Projects []string            // team projects
	ByProj   map[string][]string // project -> tickets
	Wide     string              // the company-wide project
	Users    int
	Tickets  int
}

// GenerateFlowOrg builds the flow benchmark's tenant for a corpus of chunks.
func GenerateFlowOrg(chunks int, seed uint64) *FlowOrg {
	rng := rand.New(rand.NewPCG(seed, 7))
	tickets := max(50, chunks/2)
	projects := max(4, tickets/125)
	users := max(50, chunks/25)
	const teamSize, teamsPerDept = 50, 10
	o := &FlowOrg{ByProj: map[string][]string{}, Wide: "fb-all", Users: users, Tickets: tickets}
	add := func(u, r, obj string) { o.Tuples = append(o.Tuples, authz.Tuple{User: u, Relation: r, Object: obj}) }
	nTeams := max(1, users/teamSize)
	for i := range users {
		add(fmt.Sprintf("user:fb-u%d", i), "member", fmt.Sprintf("team:fb-team%d", i%nTeams))
	}
	for t := range nTeams {
		add(fmt.Sprintf("team:fb-team%d#member", t), "member", fmt.Sprintf("team:fb-dept%d", t/teamsPerDept))
		add(fmt.Sprintf("team:fb-team%d#member", t), "member", "team:fb-everyone")
	}
	add("team:fb-everyone#member", "member", "tenant:fb")
	for i := range 5 {
		add(fmt.Sprintf("user:fb-u%d", i), "admin", "tenant:fb")
	}
	for i := range 3 {
		add(fmt.Sprintf("service_account:fb-sa%d", i), "member", "tenant:fb")
	}
	for p := range projects {
		id := fmt.Sprintf("fb-p%03d", p)
		o.Projects = append(o.Projects, id)
		add("tenant:fb", "tenant", "project:"+id)
		// Two teams, a department on every fourth project, a few direct members.
		add(fmt.Sprintf("team:fb-team%d#member", rng.IntN(nTeams)), "member", "project:"+id)
		add(fmt.Sprintf("team:fb-team%d#member", rng.IntN(nTeams)), "owner", "project:"+id)
		if p%4 == 0 {
			add(fmt.Sprintf("team:fb-dept%d#member", rng.IntN(max(1, nTeams/teamsPerDept))), "viewer", "project:"+id)
		}
		for range 5 {
			add(fmt.Sprintf("user:fb-u%d", rng.IntN(users)), "member", "project:"+id)
		}
	}
	add("tenant:fb", "tenant", "project:"+o.Wide)
	add("team:fb-everyone#member", "viewer", "project:"+o.Wide)
	add("service_account:fb-sa0", "viewer", "project:"+o.Wide)
	for i := range tickets {
		p := o.Projects[rng.IntN(projects)]
		id := fmt.Sprintf("FB-%d", i)
		o.ByProj[p] = append(o.ByProj[p], id)
		add("project:"+p, "project", "ticket:"+id)
	}
	for range tickets / 25 {
		add(fmt.Sprintf("user:fb-u%d", rng.IntN(users)), "viewer", fmt.Sprintf("ticket:FB-%d", rng.IntN(tickets)))
	}
	for i := range tickets / 50 {
		who := fmt.Sprintf("user:fb-u%d", rng.IntN(users))
		if i%10 == 0 {
			who = fmt.Sprintf("team:fb-team%d#member", rng.IntN(nTeams))
		}
		add(who, "blocked", fmt.Sprintf("ticket:FB-%d", rng.IntN(tickets)))
	}
	seen := map[authz.Tuple]bool{}
	o.Tuples = slices.DeleteFunc(o.Tuples, func(t authz.Tuple) bool {
		dup := seen[t]
		seen[t] = true
		return dup
	})
	return o
}

// sources draws n tickets the way a search answer looks: from one to three
// projects.
func (o *FlowOrg) sources(rng *rand.Rand, n int) []string {
	ps := []string{o.Projects[rng.IntN(len(o.Projects))], o.Projects[rng.IntN(len(o.Projects))], o.Projects[rng.IntN(len(o.Projects))]}
	var out []string
	for len(out) < n {
		ts := o.ByProj[ps[rng.IntN(1+min(2, n/5))]]
		if len(ts) == 0 {
			continue
		}
		if t := ts[rng.IntN(len(ts))]; !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// FlowConfig shapes the flow benchmark.
type FlowConfig struct {
	// Runs is the number of decisions per row.
	Runs int
	// Sources are the row's source counts (default 1, 10, 50).
	Sources []int
	// Timeout bounds one decision.
	Timeout time.Duration
	Seed    uint64
}

// FlowRow is one row of the flow benchmark.
type FlowRow struct {
	Case string `json:"case"`
	// Kept: listings kept between checks at an unchanged revision (the
	// default); otherwise every listing is asked afresh.
	Kept bool `json:"kept"`
	// TicketWrites: with Kept, a tuple of some ticket (a share, the common
	// write) was written before each decision, so the revision moved each
	// time and only that ticket's listings were dropped.
	TicketWrites bool `json:"ticket_writes,omitempty"`
	Sources      int  `json:"sources"`
	Audience     int  `json:"audience"`
	Allowed      int  `json:"allowed"`
	// Cut counts decisions denied because a listing was cut short (a remote
	// server's ListUsers caps): their times are not what a complete check costs.
	Cut   int     `json:"cut,omitempty"`
	Runs  int     `json:"runs"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	// FloorP50ms and FloorP99ms are the floor's, measured interleaved with the
	// row's decisions (one ListUsers of the destination alone before each), so
	// both see the same machine; Ratio is P99ms over FloorP99ms.
	FloorP50ms float64 `json:"floor_p50_ms,omitempty"`
	FloorP99ms float64 `json:"floor_p99_ms,omitempty"`
	Ratio      float64 `json:"ratio,omitempty"`
	// Engine calls per decision.
	ListUsers  float64 `json:"list_users"`
	BatchCheck float64 `json:"batch_check"`
	Read       float64 `json:"read"`
}

// RunFlow loads the flow org into eng (tuplesPerWrite per write) and measures:
// one ListUsers of each destination alone (the floor), then flow checks of 1,
// 10 and 50 sources (a tenant admin's own earlier answer) into the
// company-wide project and into a team project, with the listings kept between
// checks (an untimed first check warms them, as a destination is written to
// again and again), the same with a share of a random ticket written before
// each decision (a user outside the org, taken back at the end: the revision
// moves every time, as in a store where tickets are shared and indexed), and
// with every listing afresh.
func RunFlow(ctx context.Context, o *FlowOrg, eng filter.FlowEngine, model *openfgav1.AuthorizationModel, tuplesPerWrite int, cfg FlowConfig, progress Progress) ([]FlowRow, float64, error) {
	if progress == nil {
		progress = func(string, int, int) {}
	}
	w, ok := eng.(interface {
		Write(ctx context.Context, writes, deletes []authz.Tuple) error
	})
	if !ok {
		return nil, 0, errors.New("flow benchmark: the engine cannot write tuples")
	}
	start := time.Now()
	for i := 0; i < len(o.Tuples); i += tuplesPerWrite {
		end := min(i+tuplesPerWrite, len(o.Tuples))
		if err := w.Write(ctx, o.Tuples[i:end], nil); err != nil {
			return nil, 0, fmt.Errorf("flow org: write tuples %d..%d: %w", i, end, err)
		}
		progress("flow tuples", end, len(o.Tuples))
	}
	loadSeconds := time.Since(start).Seconds()
	if len(cfg.Sources) == 0 {
		cfg.Sources = []int{1, 10, 50}
	}
	cfg.Runs = max(1, cfg.Runs)
	team := o.Projects[0]
	var rows []FlowRow
	floor := map[string]float64{}
	hc := authz.Query{Consistency: authz.HigherConsistency}
	for _, p := range []string{o.Wide, team} {
		var d []time.Duration
		n := 0
		for range cfg.Runs {
			qctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			t0 := time.Now()
			us, err := eng.ListUsers(qctx, hc, "project:"+p, authz.RelationCanView, "user")
			d = append(d, time.Since(t0))
			cancel()
			if err != nil {
				return nil, loadSeconds, fmt.Errorf("floor: list users of %s (a remote server needs --listUsers-max-results 0 and a long --listUsers-deadline for these audiences, and bench the same --openfga-listusers-* flags; or --flow-runs 0): %w", p, err)
			}
			n = len(us)
		}
		floor[p] = percentileMs(d, 0.99)
		rows = append(rows, FlowRow{Case: "ListUsers alone (floor): project " + p, Audience: n, Runs: cfg.Runs,
			P50ms: percentileMs(d, 0.5), P99ms: floor[p], FloorP50ms: percentileMs(d, 0.5), FloorP99ms: floor[p], Ratio: 1, ListUsers: 1})
	}
	admin := authz.Principal{Kind: authz.KindUser, Tenant: "fb", User: "fb-u0", AuthMethod: "bench"}
	rng := rand.New(rand.NewPCG(cfg.Seed, 3))
	var total int
	done := 0
	type mode struct{ kept, writes bool }
	var shared *authz.Tuple // the share written before the last decision
	total = 6 * len(cfg.Sources) * cfg.Runs
	for _, md := range []mode{{true, false}, {true, true}, {false, false}} {
		kept := md.kept
		for _, dest := range []string{o.Wide, team} {
			for _, n := range cfg.Sources {
				ce := &flowCounter{FlowEngine: eng}
				records := &filter.MemoryLog{}
				fc := filter.FlowConfig{Model: model, Deadline: cfg.Timeout}
				if !kept {
					fc.CacheEntries = -1
				}
				fl := filter.NewFlow(fc, ce, records, records)
				check := func() (filter.FlowResponse, time.Duration, error) {
					// The caller's earlier answer, as the planner records it.
					src := &audit.Record{Kind: "mcp_search", Tenant: "fb", Principal: admin, Status: "complete"}
					for _, id := range o.sources(rng, n) {
						src.Results = append(src.Results, audit.Candidate{TicketID: id, Decision: audit.Returned})
					}
					if err := records.Append(ctx, src); err != nil {
						return filter.FlowResponse{}, 0, err
					}
					req := filter.FlowRequest{Sources: filter.FlowSources{AuditIDs: []string{src.ID}}, Destination: filter.FlowDestination{Project: dest}}
					t0 := time.Now()
					resp, err := fl.Check(ctx, admin, req)
					el := time.Since(t0)
					if err == nil && slices.ContainsFunc(resp.Reasons, func(r string) bool { return strings.Contains(r, "unknown") }) {
						err = fmt.Errorf("unexpected reasons %q", resp.Reasons)
					}
					return resp, el, err
				}
				if kept {
					if _, _, err := check(); err != nil { // untimed: warms the destination's listings
						return nil, loadSeconds, fmt.Errorf("flow check, %d sources -> %s: %w", n, dest, err)
					}
				}
				ce.reset()
				row := FlowRow{Case: fmt.Sprintf("flow check, %d sources -> project %s", n, dest), Kept: kept, TicketWrites: md.writes, Sources: n, Runs: cfg.Runs}
				var d, fd []time.Duration
				for range cfg.Runs {
					if md.writes {
						// Untimed: a share of a random ticket moves the
						// revision; the last one is taken back.
						t := authz.Tuple{User: "user:fb-writer", Relation: "viewer", Object: fmt.Sprintf("ticket:FB-%d", rng.IntN(o.Tickets))}
						var del []authz.Tuple
						if shared != nil && *shared != t {
							del = []authz.Tuple{*shared}
						}
						if err := w.Write(ctx, []authz.Tuple{t}, del); err != nil {
							return nil, loadSeconds, fmt.Errorf("flow benchmark: write a share: %w", err)
						}
						shared = &t
					}
					qctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
					t0 := time.Now()
					_, err := eng.ListUsers(qctx, hc, "project:"+dest, authz.RelationCanView, "user")
					fd = append(fd, time.Since(t0))
					cancel()
					if err != nil {
						return nil, loadSeconds, fmt.Errorf("floor: list users of %s: %w", dest, err)
					}
					resp, el, err := check()
					if err != nil {
						return nil, loadSeconds, fmt.Errorf("flow check, %d sources -> %s: %w", n, dest, err)
					}
					d = append(d, el)
					row.Audience = max(row.Audience, resp.Audience)
					if slices.ContainsFunc(resp.Reasons, func(r string) bool { return strings.Contains(r, "could not be listed completely") }) {
						row.Cut++
					}
					if resp.Allowed {
						row.Allowed++
					}
					done++
					progress("flow checks", done, total)
				}
				runs := float64(cfg.Runs)
				row.P50ms, row.P99ms = percentileMs(d, 0.5), percentileMs(d, 0.99)
				row.FloorP50ms, row.FloorP99ms = percentileMs(fd, 0.5), percentileMs(fd, 0.99)
				row.Ratio = row.P99ms / row.FloorP99ms
				row.ListUsers, row.BatchCheck, row.Read = float64(ce.list.Load())/runs, float64(ce.batch.Load())/runs, float64(ce.read.Load())/runs
				rows = append(rows, row)
			}
		}
	}
	if shared != nil {
		if err := w.Write(ctx, nil, []authz.Tuple{*shared}); err != nil {
			return nil, loadSeconds, fmt.Errorf("flow benchmark: take back a share: %w", err)
		}
	}
	return rows, loadSeconds, nil
}

func percentileMs(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds()) / 1000
}

// flowCounter counts the flow check's engine calls, and passes the engine's
// revisions and model identity through (the listings are kept only with both).
type flowCounter struct {
	filter.FlowEngine
	list, batch, read atomic.Int64
}

func (c *flowCounter) reset() {
	c.list.Store(0)
	c.batch.Store(0)
	c.read.Store(0)
}

func (c *flowCounter) Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	c.read.Add(1)
	return c.FlowEngine.Read(ctx, f)
}

func (c *flowCounter) ListUsers(ctx context.Context, q authz.Query, object, relation, typ string) ([]string, error) {
	c.list.Add(1)
	return c.FlowEngine.ListUsers(ctx, q, object, relation, typ)
}

func (c *flowCounter) BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error) {
	c.batch.Add(1)
	return c.FlowEngine.BatchCheck(ctx, q, checks)
}

func (c *flowCounter) Revision(ctx context.Context) (authz.Revision, error) {
	if r, ok := c.FlowEngine.(authz.Revisioned); ok {
		return r.Revision(ctx)
	}
	return authz.Revision{}, errors.New("engine has no revisions")
}

func (c *flowCounter) ChangedObjects(from, to authz.Revision) ([]string, bool) {
	if l, ok := c.FlowEngine.(authz.ChangeLister); ok {
		return l.ChangedObjects(from, to)
	}
	return nil, false
}

func (c *flowCounter) ClearanceModel() bool {
	m, ok := c.FlowEngine.(authz.ClearanceModeled)
	return ok && m.ClearanceModel()
}

// WriteFlowMarkdown writes the flow rows as a table.
func WriteFlowMarkdown(w io.Writer, rows []FlowRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "Flow check (`POST /v1/flow/check`): a tenant admin cites its own earlier answer. The floor is one ListUsers(`can_view`, users) of the destination alone, timed before each decision of the row (same machine state); ratio = p99 / the floor's p99.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | listings | audience | allowed | p50 ms | p99 ms | floor p50 / p99 ms | p99 / floor p99 | engine calls per decision |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		allowed := fmt.Sprintf("%d/%d", r.Allowed, r.Runs)
		if r.Cut > 0 {
			allowed += fmt.Sprintf(" (%d cut short)", r.Cut)
		}
		how, calls := "kept per revision",
			fmt.Sprintf("%.1f ListUsers, %.1f BatchCheck, %.1f Read", r.ListUsers, r.BatchCheck, r.Read)
		if r.TicketWrites {
			how = "kept, a ticket written before each"
		}
		if !r.Kept {
			how = "afresh"
		}
		if r.Sources == 0 { // a floor row
			how, allowed, calls = "", "", "1 ListUsers"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %.1f | %.1f | %.1f / %.1f | %.1fx | %s |\n",
			r.Case, how, r.Audience, allowed, r.P50ms, r.P99ms, r.FloorP50ms, r.FloorP99ms, r.Ratio, calls)
	}
	fmt.Fprintln(w)
}
