package filter_test

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	authzembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/testenv"
)

var (
	flowBench      = flag.Bool("flow.bench", false, "run the flow-check benchmark (minutes; wrap in flock /tmp/clearance-heavy.lock)")
	flowBenchUsers = flag.Int("flow.bench.users", 4000, "users of the flow benchmark's tenant")
	flowBenchRuns  = flag.Int("flow.bench.runs", 40, "decisions per case of the flow benchmark")
	flowBenchDS    = flag.String("flow.bench.datastore", authzembedded.SQLite, "engine datastore of the flow benchmark (sqlite or postgres with DATABASE_URL)")
)

// flowCounter counts the engine calls of the flow check.
type flowCounter struct {
	filter.FlowEngine
	list, batch, read atomic.Int64
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

// flowOrg is the benchmark's tenant at `clearance bench` scale: 50,000 tickets
// (100k chunks at two per ticket) in 400 projects, N users in teams of 50
// nested in departments, one company-wide project everyone reads (the seed's
// acme-docs), 2,000 direct shares and 1,000 blocks (a tenth of them on teams).
type flowOrg struct {
	tuples   []authz.Tuple
	projects []string
	byProj   map[string][]string // project -> tickets
	wide     string              // everyone's project
}

func newFlowOrg(users int, seed uint64) *flowOrg {
	rng := rand.New(rand.NewPCG(seed, 7))
	o := &flowOrg{byProj: map[string][]string{}, wide: "fb-all"}
	add := func(u, r, obj string) { o.tuples = append(o.tuples, authz.Tuple{User: u, Relation: r, Object: obj}) }
	const tickets, projects, teamSize, teamsPerDept = 50_000, 400, 50, 10
	nTeams := max(1, users/teamSize)
	for i := range users {
		u := fmt.Sprintf("user:fb-u%d", i)
		add(u, "member", fmt.Sprintf("team:fb-team%d", i%nTeams))
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
		o.projects = append(o.projects, id)
		add("tenant:fb", "tenant", "project:"+id)
		// Two teams and a department's worth of viewers through nesting, a few
		// direct members.
		add(fmt.Sprintf("team:fb-team%d#member", rng.IntN(nTeams)), "member", "project:"+id)
		add(fmt.Sprintf("team:fb-team%d#member", rng.IntN(nTeams)), "owner", "project:"+id)
		if p%4 == 0 {
			add(fmt.Sprintf("team:fb-dept%d#member", rng.IntN(max(1, nTeams/teamsPerDept))), "viewer", "project:"+id)
		}
		for range 5 {
			add(fmt.Sprintf("user:fb-u%d", rng.IntN(users)), "member", "project:"+id)
		}
	}
	add("tenant:fb", "tenant", "project:"+o.wide)
	add("team:fb-everyone#member", "viewer", "project:"+o.wide)
	add("service_account:fb-sa0", "viewer", "project:"+o.wide)
	for i := range tickets {
		p := o.projects[rng.IntN(projects)]
		id := fmt.Sprintf("FB-%d", i)
		o.byProj[p] = append(o.byProj[p], id)
		add("project:"+p, "project", "ticket:"+id)
	}
	for range 2000 {
		add(fmt.Sprintf("user:fb-u%d", rng.IntN(users)), "viewer", fmt.Sprintf("ticket:FB-%d", rng.IntN(tickets)))
	}
	for i := range 1000 {
		who := fmt.Sprintf("user:fb-u%d", rng.IntN(users))
		if i%10 == 0 {
			who = fmt.Sprintf("team:fb-team%d#member", rng.IntN(nTeams))
		}
		add(who, "blocked", fmt.Sprintf("ticket:FB-%d", rng.IntN(tickets)))
	}
	seen := map[string]bool{}
	o.tuples = slices.DeleteFunc(o.tuples, func(t authz.Tuple) bool {
		dup := seen[t.String()]
		seen[t.String()] = true
		return dup
	})
	return o
}

// sources draws n tickets the way a search answer looks: from one to three
// projects.
func (o *flowOrg) sources(rng *rand.Rand, n int) []string {
	ps := []string{o.projects[rng.IntN(len(o.projects))], o.projects[rng.IntN(len(o.projects))], o.projects[rng.IntN(len(o.projects))]}
	var out []string
	for len(out) < n {
		ts := o.byProj[ps[rng.IntN(1+min(2, n/5))]]
		if t := ts[rng.IntN(len(ts))]; !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// TestFlowBenchmark measures flow checks at bench scale: 1, 10 and 50 sources
// into the company-wide project (every user) and into one team project, next to
// one ListUsers of the wide project alone (the floor). Timings are reported,
// never asserted. Run:
//
//	flock /tmp/clearance-heavy.lock go test ./filter -run TestFlowBenchmark -flow.bench -v -timeout 30m
func TestFlowBenchmark(t *testing.T) {
	if !*flowBench {
		t.Skip("pass -flow.bench")
	}
	ctx := context.Background()
	cfg := authzembedded.Config{Datastore: *flowBenchDS, DataDir: t.TempDir(), MaxTuplesPerWrite: 10_000}
	if *flowBenchDS == authzembedded.Postgres {
		cfg.DatabaseURL = testenv.DatabaseURL(t)
	}
	eng, err := authzembedded.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	o := newFlowOrg(*flowBenchUsers, 42)
	start := time.Now()
	for part := range slices.Chunk(o.tuples, 10_000) {
		if err := eng.Write(ctx, part, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("loaded %d tuples (%d users, 50,000 tickets, %d projects) in %s", len(o.tuples), *flowBenchUsers, len(o.projects)+1, time.Since(start).Round(time.Millisecond))

	ms := func(d []time.Duration, p float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds()) / 1000
	}
	hc := authz.Query{Consistency: authz.HigherConsistency}
	// The floor: one ListUsers of the wide project (and of a team project).
	floor := map[string]float64{}
	floorOf := map[string]string{"same": o.projects[0]} // a team project like the sources' own
	for _, p := range []string{o.wide, o.projects[0]} {
		var d []time.Duration
		n := 0
		for range *flowBenchRuns {
			t0 := time.Now()
			us, err := eng.ListUsers(ctx, hc, "project:"+p, authz.RelationCanView, "user")
			d = append(d, time.Since(t0))
			if err != nil {
				t.Fatal(err)
			}
			n = len(us)
		}
		floor[p] = ms(d, 0.99)
		t.Logf("| ListUsers alone (floor), project %s | %d users | | %.1f | %.1f | 1 ListUsers |", p, n, ms(d, 0.5), ms(d, 0.99))
	}
	principal := authz.Principal{Kind: authz.KindUser, Tenant: "fb", User: "fb-u0", AuthMethod: "bench"} // a tenant admin
	rng := rand.New(rand.NewPCG(1, 2))
	for _, mode := range []struct {
		name, model string
	}{{"per project", authz.ModelDSL}, {"per ticket", ""}} {
		for _, dest := range []string{o.wide, o.projects[0], "same"} {
			for _, n := range []int{1, 10, 50} {
				ce := &flowCounter{FlowEngine: eng}
				sl := &statLog{}
				records := &filter.MemoryLog{}
				fl := filter.NewFlow(filter.FlowConfig{ModelDSL: mode.model, Deadline: time.Minute}, ce, records, sl)
				var d []time.Duration
				audience, allowed := 0, 0
				for range *flowBenchRuns {
					// The caller's earlier answer, as the planner records it.
					src := &audit.Record{Kind: "mcp_search", Tenant: "fb", Principal: principal, Status: "complete"}
					ids, to := o.sources(rng, n), dest
					if dest == "same" {
						// A summary written back into the sources' own project.
						to = o.projects[1+rng.IntN(len(o.projects)-1)]
						ids = nil
						for _, id := range o.byProj[to] {
							if len(ids) < n {
								ids = append(ids, id)
							}
						}
					}
					for _, id := range ids {
						src.Results = append(src.Results, audit.Candidate{TicketID: id, Decision: audit.Returned})
					}
					if err := records.Append(ctx, src); err != nil {
						t.Fatal(err)
					}
					req := filter.FlowRequest{Sources: filter.FlowSources{AuditIDs: []string{src.ID}}, Destination: filter.FlowDestination{Project: to}}
					t0 := time.Now()
					resp, err := fl.Check(ctx, principal, req)
					d = append(d, time.Since(t0))
					if err != nil {
						t.Fatal(err)
					}
					if strings.Contains(strings.Join(resp.Reasons, " "), "unknown") || strings.Contains(strings.Join(resp.Reasons, " "), "completely") {
						t.Fatalf("%+v", resp)
					}
					audience = resp.Audience
					if resp.Allowed {
						allowed++
					}
				}
				runs := float64(*flowBenchRuns)
				var stages []string
				for _, st := range []string{"check", "audience", "sources", "total"} {
					stages = append(stages, fmt.Sprintf("%s %.1f", st, float64(sl.sum[st])/runs/1000))
				}
				t.Logf("  mean stage ms: %s", strings.Join(stages, ", "))
				t.Logf("| flow check, %d sources -> project %s (%s) | %d principals | %d/%d allowed | %.1f | %.1f (%.1fx floor) | %.1f ListUsers + %.1f BatchCheck + %.1f Read |",
					n, dest, mode.name, audience, allowed, *flowBenchRuns, ms(d, 0.5), ms(d, 0.99), ms(d, 0.99)/floor[cmp.Or(floorOf[dest], dest)], float64(ce.list.Load())/runs, float64(ce.batch.Load())/runs, float64(ce.read.Load())/runs)
			}
		}
	}
}
