package filter_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/openfga"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/internal/testenv"
)

var flowDecisions = flag.Int("flow.decisions", 2400, "decisions of the differential flow test (spread over several random orgs)")

// principalsOf is every user and service account of the world: the universe the
// reference checks one by one.
func (w *world) principalsOf() []string {
	var out []string
	for _, ten := range w.tenants {
		for _, u := range w.users[ten] {
			out = append(out, "user:"+u)
		}
		for _, s := range w.sas[ten] {
			out = append(out, "service_account:"+s)
		}
	}
	return out
}

// flowCase is one random (sources, destination) pair and how it was built.
type flowCase struct {
	p   authz.Principal
	req filter.FlowRequest
}

// refFlow is the brute-force reference decision: resolve the sources as the
// caller may (its own records' returned tickets, tickets it may view now),
// then check every principal of the world against destination and sources with
// the reference evaluator. known=false: a source or the destination is unknown.
func (w *world) refFlow(log *filter.MemoryLog, c flowCase) (allowed, known bool, audience, excluded int) {
	p := c.p
	var sources []string
	for _, id := range c.req.Sources.AuditIDs {
		r, ok := log.Record(id)
		if !ok || r.Principal.Kind != p.Kind || r.Principal.User != p.User || r.Principal.Agent != p.Agent ||
			r.Principal.ServiceAccount != p.ServiceAccount || r.Tenant != p.Tenant {
			return false, false, 0, 0
		}
		for _, cand := range r.Results {
			if cand.Decision == audit.Returned {
				sources = append(sources, cand.TicketID)
			}
		}
	}
	now := time.Now()
	for _, id := range c.req.Sources.TicketIDs {
		if !w.ref.visible(p, id, now) {
			return false, false, 0, 0
		}
		sources = append(sources, id)
	}
	d := c.req.Destination
	var can func(u string) bool
	switch {
	case d.Project != "":
		if !slices.Contains(w.ref.users("project:"+d.Project, "tenant"), "tenant:"+p.Tenant) {
			return false, false, 0, 0
		}
		can = func(u string) bool { return w.ref.projectCanView("project:"+d.Project, u) }
	case d.Ticket != "":
		if !w.ref.visible(p, d.Ticket, now) {
			return false, false, 0, 0
		}
		can = func(u string) bool { return w.ref.ticketCanView("ticket:"+d.Ticket, u) }
	default:
		can = func(u string) bool { return slices.Contains(d.Principals, u) }
	}
	for _, u := range w.principalsOf() {
		if !can(u) {
			continue
		}
		audience++
		for _, s := range sources {
			if !w.ref.ticketCanView("ticket:"+s, u) {
				excluded++
				break
			}
		}
	}
	return excluded == 0, true, audience, excluded
}

// flowCase draws a principal, lets it search (its audit record is a source),
// adds ticket ids (mostly ones it may view), sometimes cites a record of
// someone else or a missing one, and picks a destination.
func (w *world) flowCase(pl *filter.Planner, log *filter.MemoryLog, others []string) flowCase {
	p := w.principal()
	p.Narrowing = nil
	c := flowCase{p: p}
	if w.rng.IntN(4) != 0 {
		resp, err := pl.Search(context.Background(), p, w.request())
		if err != nil {
			w.t.Fatal(err)
		}
		c.req.Sources.AuditIDs = append(c.req.Sources.AuditIDs, resp.AuditID)
	}
	switch n := w.rng.IntN(20); {
	case n == 0 && len(others) > 0:
		c.req.Sources.AuditIDs = append(c.req.Sources.AuditIDs, pick(w.rng, others)) // someone's record
	case n == 1:
		c.req.Sources.AuditIDs = append(c.req.Sources.AuditIDs, "01JAAAAAAAAAAAAAAAAAAAAAAA") // missing
	}
	now := time.Now()
	for range w.rng.IntN(4) {
		tk := pick(w.rng, w.tickets)
		if w.ref.visible(p, tk.id, now) || w.rng.IntN(8) == 0 {
			c.req.Sources.TicketIDs = append(c.req.Sources.TicketIDs, tk.id)
		}
	}
	if w.rng.IntN(15) == 0 {
		c.req.Sources.TicketIDs = append(c.req.Sources.TicketIDs, fmt.Sprintf("%s-missing%d", p.Tenant, w.rng.IntN(3))) // no such ticket
	}
	if len(c.req.Sources.AuditIDs) == 0 && len(c.req.Sources.TicketIDs) == 0 {
		c.req.Sources.TicketIDs = []string{pick(w.rng, w.tickets).id}
	}
	switch w.rng.IntN(3) {
	case 0:
		ten := p.Tenant
		if w.rng.IntN(10) == 0 {
			ten = pick(w.rng, w.tenants)
		}
		c.req.Destination.Project = pick(w.rng, w.projects[ten])
	case 1:
		// Mostly a ticket the caller may view (else it is unknown).
		c.req.Destination.Ticket = pick(w.rng, w.tickets).id
		for range 20 {
			if w.ref.visible(p, c.req.Destination.Ticket, now) || w.rng.IntN(10) == 0 {
				break
			}
			c.req.Destination.Ticket = pick(w.rng, w.tickets).id
		}
		if w.rng.IntN(20) == 0 {
			c.req.Destination.Ticket = p.Tenant + "-missing-dest"
		}
	default:
		all := w.principalsOf()
		for range 1 + w.rng.IntN(4) {
			c.req.Destination.Principals = append(c.req.Destination.Principals, pick(w.rng, all))
		}
	}
	return c
}

// TestDifferentialFlow compares every flow decision over random orgs (nested
// teams, roles, shares, blocks, agents with grants, tuple changes between the
// read and the check) with the brute-force reference. A wrong allow fails at
// once; wrong denials are counted and must be zero too.
func TestDifferentialFlow(t *testing.T) {
	st := runFlowDifferential(t, memoryEngine(t), 4, *flowDecisions, false)
	if st.decisions < 2000 && *flowDecisions >= 2000 {
		t.Errorf("only %d decisions", st.decisions)
	}
}

// TestDifferentialFlowRemote is TestDifferentialFlow (smaller) against a real
// `openfga run` through authz/openfga: uncapped (--listUsers-max-results 0),
// every decision must match the reference; capped at 4 users, the adapter
// reports a listing that large as cut short and the check denies it with that
// reason, never allows.
func TestDifferentialFlowRemote(t *testing.T) {
	if os.Getenv("OPENFGA_BIN") == "" {
		t.Skip("OPENFGA_BIN not set: this test needs a real `openfga run`; run it under ./scripts/with-test-servers.sh")
	}
	for _, tc := range []struct {
		name string
		max  int
	}{{"uncapped", 0}, {"capped at 4", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.StartOpenFGA(t, "", "--listUsers-max-results", strconv.Itoa(tc.max), "--listUsers-deadline", "30s",
				"--listObjects-deadline", "30s", "--request-timeout", "60s")
			cfg := openfga.Config{URL: srv.URL, StoreName: "flow-differential", ServerListObjectsDeadline: 30 * time.Second,
				ServerListUsersDeadline: 30 * time.Second, ServerListUsersMaxResults: -1}
			if tc.max > 0 {
				cfg.ServerListUsersMaxResults = tc.max
			}
			eng, err := openfga.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { eng.Close() })
			st := runFlowDifferential(t, eng, 2, *flowRemoteDecisions, tc.max > 0)
			if tc.max > 0 && st.cut == 0 {
				t.Errorf("no listing was cut short at a cap of %d", tc.max)
			}
		})
	}
}

var flowRemoteDecisions = flag.Int("flow.remote.decisions", 500, "decisions of each remote differential flow run")

// flowDiffEngine is what the differential flow test drives: the planner's
// engine and the flow check's.
type flowDiffEngine interface {
	authz.Engine
	filter.FlowEngine
}

type flowDiffStats struct{ decisions, cut int }

// runFlowDifferential runs about n decisions over orgs random orgs on eng.
// With cuts, the engine may cut listings short: a denial for that reason where
// the reference allows is counted (cut), not wrong; a wrong allow never is.
func runFlowDifferential(t *testing.T, eng flowDiffEngine, orgs, n int, cuts bool) flowDiffStats {
	perOrg := max(1, n*2/3/orgs) // half the cases are asked twice
	var decisions, allowed, unknown, wrongDenials, changed, named, cut int
	ways := map[string]int{} // how sources were asked: pairs, listed; kept: listings kept from earlier checks
	for seed := range uint64(orgs) {
		w := newWorld(t, eng, seed+101, 30)
		log := &filter.MemoryLog{}
		pl := filter.New(filter.Config{CacheSize: -1}, eng, w.store, w.emb, log)
		// Every way of finding who cannot view a source: pairs in one
		// BatchCheck, one ListUsers per source, the sources' projects listed
		// once (the model's rule), and the default mix.
		//
		// eng evaluates clearance's own model, so service accounts come from
		// direct tuples (flowsa.go) and listings are kept per revision;
		// foreign hides that, as for any other model: every listing, service
		// accounts included, is the engine's ListUsers, none kept.
		foreign := foreignEngine{eng}
		flows := []*filter.Flow{
			filter.NewFlow(filter.FlowConfig{PairChecks: 1 << 30}, eng, log, log),
			filter.NewFlow(filter.FlowConfig{PairChecks: -1}, foreign, log, log),
			filter.NewFlow(filter.FlowConfig{PairChecks: -1, ModelDSL: authz.ModelDSL}, eng, log, log),
			filter.NewFlow(filter.FlowConfig{ModelDSL: authz.ModelDSL}, eng, log, log),
			// The destination decides: pairs for small audiences, listings
			// for larger ones (both ways, with and without the listings kept
			// between checks).
			filter.NewFlow(filter.FlowConfig{PairChecks: 40, ModelDSL: authz.ModelDSL}, eng, log, log),
			filter.NewFlow(filter.FlowConfig{PairChecks: 40, CacheEntries: -1}, foreign, log, log),
			// Every source listed whole (ticket#can_view), service accounts
			// from direct tuples, nothing kept.
			filter.NewFlow(filter.FlowConfig{PairChecks: -1, CacheEntries: -1}, eng, log, log),
			filter.NewFlow(filter.FlowConfig{PairChecks: -1, ModelDSL: authz.ModelDSL}, foreign, log, log),
		}
		var others []string
		for i := range perOrg {
			c := w.flowCase(pl, log, others)
			others = append(others, c.req.Sources.AuditIDs...)
			// Half the cases are asked twice of the same checker, the second
			// time often after a change: listings kept from the first answer
			// must serve only an unchanged revision.
			reps := 1 + w.rng.IntN(2)
			for rep := range reps {
				// Access changes between the read and the check: the rule is
				// evaluated at check time.
				if (rep == 0 && w.rng.IntN(3) == 0) || (rep == 1 && w.rng.IntN(2) == 0) {
					changed++
					for range 1 + w.rng.IntN(3) {
						w.mutate()
					}
				}
				resp, err := flows[i%len(flows)].Check(context.Background(), c.p, c.req)
				if err != nil {
					t.Fatalf("%s %+v: %v", c.p, c.req, err)
				}
				decisions++
				want, known, audience, excluded := w.refFlow(log, c)
				if resp.Allowed && !want {
					t.Fatalf("WRONG ALLOW: %s %+v: got %+v; reference known=%v audience=%d excluded=%d", c.p, c.req, resp, known, audience, excluded)
				}
				if cuts && slices.ContainsFunc(resp.Reasons, func(r string) bool { return strings.Contains(r, "could not be listed completely") }) {
					cut++
					continue
				}
				if !resp.Allowed && want {
					wrongDenials++
					t.Errorf("wrong denial: %s %+v: got %+v; reference audience=%d", c.p, c.req, resp, audience)
					continue
				}
				if !known {
					unknown++
					if !slices.ContainsFunc(resp.Reasons, func(r string) bool { return strings.Contains(r, "is unknown") }) {
						t.Fatalf("%s %+v: unknown source or destination, reasons %q", c.p, c.req, resp.Reasons)
					}
					continue
				}
				if resp.Audience != audience || resp.Excluded != excluded {
					t.Fatalf("%s %+v: audience %d excluded %d, reference %d and %d (%q)", c.p, c.req, resp.Audience, resp.Excluded, audience, excluded, resp.Reasons)
				}
				if resp.Allowed {
					allowed++
				}
				// Reasons name only tickets the caller may view now.
				for _, reason := range resp.Reasons {
					list, found := strings.CutPrefix(reason, "sources not everyone there may view: ")
					if !found {
						continue
					}
					list, _, _ = strings.Cut(list, " (")
					for _, id := range strings.Split(list, ", ") {
						named++
						if !w.ref.visible(c.p, id, time.Now()) {
							t.Fatalf("%s: reason names %s, which it may not view: %q", c.p, id, reason)
						}
					}
				}
				r, ok := log.Record(resp.AuditID)
				if !ok || r.Kind != filter.KindFlowCheck || r.Flow == nil || r.Flow.Allowed != resp.Allowed {
					t.Fatalf("decision %s has no matching flow_check record: %+v", resp.AuditID, r)
				}
				for _, n := range r.Plan.Notes {
					switch {
					case strings.HasSuffix(n, "one BatchCheck of the pairs"):
						ways["pairs"]++
					case strings.HasSuffix(n, "their audiences listed"):
						ways["listed"]++
					case strings.HasPrefix(n, "listings: ") && !strings.HasPrefix(n, "listings: 0 of"):
						ways["kept"]++
					}
				}
			}
		}
		for _, fl := range flows {
			ways["direct"] += int(fl.CacheStats().Direct)
		}
	}
	t.Logf("%d flow decisions (%d allowed, %d with an unknown source or destination, %d after access changed since the read; %d tickets named in reasons, each visible to the caller; %d denied because a listing was cut short): 0 wrong allows, %d wrong denials",
		decisions, allowed, unknown, changed, named, cut, wrongDenials)
	t.Logf("sources against the audience's users: %d by pairs, %d by listings; %d decisions used listings kept from earlier checks; %d listings (service accounts, projects, shares, blocks) taken from direct tuples",
		ways["pairs"], ways["listed"], ways["kept"], ways["direct"])
	if !cuts && (ways["pairs"] == 0 || ways["listed"] == 0 || ways["kept"] == 0 || ways["direct"] == 0) {
		t.Errorf("not every way was exercised: %v", ways)
	}
	return flowDiffStats{decisions: decisions, cut: cut}
}

// TestFlowCitesOnlyOwnRecords: an agent cannot cite its user's records, a user
// cannot cite another user's or the agent's, a service account cannot cite a
// user's; each answers exactly like a missing record.
func TestFlowCitesOnlyOwnRecords(t *testing.T) {
	eng := memoryEngine(t)
	w := newWorld(t, eng, 7, 20)
	log := &filter.MemoryLog{}
	pl := filter.New(filter.Config{}, eng, w.store, w.emb, log)
	fl := filter.NewFlow(filter.FlowConfig{}, eng, log, log)
	ten := w.tenants[0]
	anne := authz.Principal{Kind: authz.KindUser, Tenant: ten, User: w.users[ten][0], AuthMethod: "dev"}
	agent := anne
	agent.Kind, agent.Agent = authz.KindAgent, "copilot"
	bob := authz.Principal{Kind: authz.KindUser, Tenant: ten, User: w.users[ten][1], AuthMethod: "dev"}
	sa := authz.Principal{Kind: authz.KindServiceAccount, Tenant: ten, ServiceAccount: w.sas[ten][0], AuthMethod: "dev"}
	other := anne
	other.Tenant = w.tenants[1]
	search := func(p authz.Principal) string {
		r, err := pl.Search(context.Background(), p, filter.Request{Query: "login timeout", TopK: 5})
		if err != nil {
			t.Fatal(err)
		}
		return r.AuditID
	}
	mine, agents := search(anne), search(agent)
	const missing = "01JAAAAAAAAAAAAAAAAAAAAAAA"
	dest := filter.FlowDestination{Project: w.projects[ten][0]}
	reasons := func(p authz.Principal, id string) string {
		resp, err := fl.Check(context.Background(), p, filter.FlowRequest{Sources: filter.FlowSources{AuditIDs: []string{id}}, Destination: dest})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Allowed {
			t.Fatalf("%s citing %s: allowed", p, id)
		}
		return strings.ReplaceAll(strings.Join(resp.Reasons, "|"), id, "ID")
	}
	for _, tc := range []struct {
		name string
		p    authz.Principal
		id   string
	}{
		{"agent cites its user's record", agent, mine},
		{"user cites its agent's record", anne, agents},
		{"another user cites it", bob, mine},
		{"a service account cites it", sa, mine},
		{"the same user id in another tenant", other, mine},
	} {
		if got, want := reasons(tc.p, tc.id), reasons(tc.p, missing); got != want {
			t.Errorf("%s: reasons %q, want exactly those of a missing record %q", tc.name, got, want)
		}
	}
	// Their own records resolve.
	for _, c := range []struct {
		p  authz.Principal
		id string
	}{{anne, mine}, {agent, agents}} {
		resp, err := fl.Check(context.Background(), c.p, filter.FlowRequest{Sources: filter.FlowSources{AuditIDs: []string{c.id}}, Destination: dest})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.Join(resp.Reasons, " "), "unknown") {
			t.Errorf("%s cannot cite its own record: %q", c.p, resp.Reasons)
		}
	}
}

// TestFlowRevocationAfterRead: the rule is evaluated at check time, both ways.
// A destination member who loses access to a source between the read and the
// check turns an allow into a denial; one who gains it, a denial into an allow.
func TestFlowRevocationAfterRead(t *testing.T) {
	eng := memoryEngine(t)
	log := &filter.MemoryLog{}
	fl := filter.NewFlow(filter.FlowConfig{}, eng, log, log)
	ten, u0, u1 := "rt", "ru0", "ru1"
	write := func(ts []authz.Tuple) {
		t.Helper()
		if err := eng.Write(context.Background(), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	write([]authz.Tuple{
		{User: "tenant:" + ten, Relation: "tenant", Object: "project:src"},
		{User: "tenant:" + ten, Relation: "tenant", Object: "project:dst"},
		{User: "project:src", Relation: "project", Object: "ticket:S-1"},
		{User: "user:" + u0, Relation: "member", Object: "project:src"},
		{User: "user:" + u0, Relation: "member", Object: "project:dst"},
		{User: "user:" + u1, Relation: "member", Object: "project:dst"},
	})
	p := authz.Principal{Kind: authz.KindUser, Tenant: ten, User: u0, AuthMethod: "dev"}
	req := filter.FlowRequest{Sources: filter.FlowSources{TicketIDs: []string{"S-1"}}, Destination: filter.FlowDestination{Project: "dst"}}
	decide := func() filter.FlowResponse {
		t.Helper()
		resp, err := fl.Check(context.Background(), p, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := decide(); r.Allowed {
		t.Fatalf("u1 cannot view S-1 yet the flow is allowed: %+v", r)
	}
	write([]authz.Tuple{{User: "user:" + u1, Relation: "viewer", Object: "ticket:S-1"}})
	if r := decide(); !r.Allowed {
		t.Fatalf("after u1 got S-1, still denied: %+v", r)
	}
	write([]authz.Tuple{{User: "user:" + u1, Relation: "blocked", Object: "ticket:S-1"}})
	if r := decide(); r.Allowed || r.Excluded != 1 {
		t.Fatalf("after u1 was blocked on S-1: %+v, want a denial excluding 1", r)
	}
}

// TestFlowFailsClosed: an engine that cannot answer is an error, a listing cut
// short is a denial, never an allow.
func TestFlowFailsClosed(t *testing.T) {
	eng := memoryEngine(t)
	ten, u0 := "ft", "fu0"
	if err := eng.Write(context.Background(), []authz.Tuple{
		{User: "tenant:" + ten, Relation: "tenant", Object: "project:a"},
		{User: "project:a", Relation: "project", Object: "ticket:A-1"},
		{User: "user:" + u0, Relation: "member", Object: "project:a"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	p := authz.Principal{Kind: authz.KindUser, Tenant: ten, User: u0, AuthMethod: "dev"}
	req := filter.FlowRequest{Sources: filter.FlowSources{TicketIDs: []string{"A-1"}}, Destination: filter.FlowDestination{Project: "a"}}
	log := &filter.MemoryLog{}
	if r, err := filter.NewFlow(filter.FlowConfig{}, eng, log, log).Check(context.Background(), p, req); err != nil || !r.Allowed {
		t.Fatalf("healthy engine: %+v %v, want allowed", r, err)
	}
	for _, tc := range []struct {
		name string
		eng  filter.FlowEngine
		err  bool
	}{
		{"list users fails", &flowFault{FlowEngine: eng, listErr: fmt.Errorf("boom: %w", authz.ErrUnavailable)}, true},
		{"list users truncated", &flowFault{FlowEngine: eng, listErr: fmt.Errorf("cut: %w", authz.ErrTruncated)}, false},
		{"batch check fails", &flowFault{FlowEngine: eng, checkErr: fmt.Errorf("boom: %w", authz.ErrUnavailable)}, true},
		// Clearance's model: listings taken apart into direct tuples and
		// the listings of their teams and tenant fail the same way.
		{"list users fails, clearance's model", modeledFault{&flowFault{FlowEngine: eng, listErr: fmt.Errorf("boom: %w", authz.ErrUnavailable)}}, true},
		{"list users truncated, clearance's model", modeledFault{&flowFault{FlowEngine: eng, listErr: fmt.Errorf("cut: %w", authz.ErrTruncated)}}, false},
		{"read fails, clearance's model", modeledFault{&flowFault{FlowEngine: eng, readErr: fmt.Errorf("boom: %w", authz.ErrUnavailable)}}, true},
	} {
		for _, cfg := range []filter.FlowConfig{{PairChecks: 1 << 30}, {PairChecks: -1}, {PairChecks: -1, ModelDSL: authz.ModelDSL}} {
			pairs := cfg.PairChecks
			r, err := filter.NewFlow(cfg, tc.eng, log, log).Check(context.Background(), p, req)
			switch {
			case r.Allowed:
				t.Errorf("%s (pairs %d): allowed", tc.name, pairs)
			case tc.err && !errors.Is(err, clearance.ErrUnavailable):
				t.Errorf("%s (pairs %d): %+v %v, want ErrUnavailable", tc.name, pairs, r, err)
			case !tc.err && (err != nil || !strings.Contains(strings.Join(r.Reasons, " "), "could not be listed completely")):
				t.Errorf("%s (pairs %d): %+v %v, want a denial naming the cut-off", tc.name, pairs, r, err)
			}
		}
	}
}

type flowFault struct {
	filter.FlowEngine
	listErr, checkErr, readErr error
}

func (f *flowFault) Read(ctx context.Context, tf authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	if f.readErr != nil {
		return func(yield func(authz.Tuple, error) bool) { yield(authz.Tuple{}, f.readErr) }
	}
	return f.FlowEngine.Read(ctx, tf)
}

// modeledFault is flowFault on an engine evaluating clearance's own model.
type modeledFault struct{ *flowFault }

func (modeledFault) ClearanceModel() bool { return true }

func (f *flowFault) ListUsers(ctx context.Context, q authz.Query, object, relation, typ string) ([]string, error) {
	if f.listErr != nil {
		return nil, f.listErr
	}
	return f.FlowEngine.ListUsers(ctx, q, object, relation, typ)
}

func (f *flowFault) BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error) {
	if f.checkErr != nil {
		return nil, f.checkErr
	}
	return f.FlowEngine.BatchCheck(ctx, q, checks)
}

// flowSpy is the real engine with the flow check's calls recorded.
type flowSpy struct {
	filter.FlowEngine
	mu      sync.Mutex
	batches []checkCall
	reads   int
	lists   int
	listed  []string // "object#relation@type" of each ListUsers
}

func (e *flowSpy) BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error) {
	e.mu.Lock()
	e.batches = append(e.batches, checkCall{q: q, checks: append([]authz.Check(nil), checks...)})
	e.mu.Unlock()
	return e.FlowEngine.BatchCheck(ctx, q, checks)
}

func (e *flowSpy) Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	e.mu.Lock()
	e.reads++
	e.mu.Unlock()
	return e.FlowEngine.Read(ctx, f)
}

func (e *flowSpy) ListUsers(ctx context.Context, q authz.Query, object, relation, typ string) ([]string, error) {
	e.mu.Lock()
	e.lists++
	e.listed = append(e.listed, object+"#"+relation+"@"+typ)
	e.mu.Unlock()
	return e.FlowEngine.ListUsers(ctx, q, object, relation, typ)
}

// TestFlowUnknownTicketsCostTheSame: citing a ticket the caller may not view,
// another tenant's, or no ticket at all answers the same denial after the same
// engine calls; a missing id is checked against the decoy project of the
// caller's own tenant (as ticket reads are), and the decoy never makes it a
// source, even for a tenant admin whom the decoy allows.
func TestFlowUnknownTicketsCostTheSame(t *testing.T) {
	eng := memoryEngine(t)
	if err := eng.Write(context.Background(), []authz.Tuple{
		{User: "tenant:pa", Relation: "tenant", Object: "project:pa-1"},
		{User: "tenant:pb", Relation: "tenant", Object: "project:pb-1"},
		{User: "project:pa-1", Relation: "project", Object: "ticket:PA-1"},
		{User: "project:pa-1", Relation: "project", Object: "ticket:PA-2"},
		{User: "project:pb-1", Relation: "project", Object: "ticket:PB-1"},
		{User: "user:ada", Relation: "admin", Object: "tenant:pa"},
		{User: "user:ada", Relation: "blocked", Object: "ticket:PA-2"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	spy := &flowSpy{FlowEngine: eng}
	log := &filter.MemoryLog{}
	fl := filter.NewFlow(filter.FlowConfig{ModelDSL: authz.ModelDSL}, spy, log, log)
	ada := authz.Principal{Kind: authz.KindUser, Tenant: "pa", User: "ada", AuthMethod: "dev"}
	type cost struct{ reads, batches, lists int }
	ask := func(id string) (string, cost, []checkCall) {
		t.Helper()
		spy.mu.Lock()
		spy.batches, spy.reads, spy.lists = nil, 0, 0
		spy.mu.Unlock()
		resp, err := fl.Check(context.Background(), ada, filter.FlowRequest{
			Sources: filter.FlowSources{TicketIDs: []string{id}}, Destination: filter.FlowDestination{Project: "pa-1"}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Allowed {
			t.Fatalf("citing %s: allowed", id)
		}
		return strings.ReplaceAll(strings.Join(resp.Reasons, "|"), id, "ID"), cost{spy.reads, len(spy.batches), spy.lists}, spy.batches
	}
	blocked, c0, _ := ask("PA-2")
	for _, id := range []string{"PB-1", "PA-404"} {
		got, c, batches := ask(id)
		if got != blocked || c != c0 {
			t.Errorf("%s: %q after %+v engine calls; an invisible ticket: %q after %+v", id, got, c, blocked, c0)
		}
		if id == "PA-404" {
			q := batches[0].q
			if !slices.Contains(q.ContextualTuples, authz.Tuple{User: "project:clearance~decoy", Relation: "project", Object: "ticket:PA-404"}) ||
				!slices.Contains(q.ContextualTuples, authz.Tuple{User: "tenant:pa", Relation: "tenant", Object: "project:clearance~decoy"}) {
				t.Errorf("missing ticket checked without the decoy of the caller's tenant: %+v", q.ContextualTuples)
			}
		}
	}
}

// foreignEngine is the engine without its revisions and model identity: what
// the checker sees of an engine evaluating another application's model.
type foreignEngine struct{ filter.FlowEngine }

// revisionedSpy is flowSpy that keeps the engine's revisions and model
// identity, so the checker keeps listings between checks.
type revisionedSpy struct {
	*flowSpy
	rev interface {
		authz.Revisioned
		authz.ClearanceModeled
		authz.ChangeLister
	}
}

func (e revisionedSpy) ChangedObjects(from, to authz.Revision) ([]string, bool) {
	return e.rev.ChangedObjects(from, to)
}

func (e revisionedSpy) Revision(ctx context.Context) (authz.Revision, error) {
	return e.rev.Revision(ctx)
}
func (e revisionedSpy) ClearanceModel() bool { return e.rev.ClearanceModel() }

// TestFlowKeepsListingsPerRevision: a second check at the same revision lists
// nothing, a tuple write in between (a block of one destination member on the
// source) is seen at once, and with the cache off every check lists afresh.
func TestFlowKeepsListingsPerRevision(t *testing.T) {
	eng := memoryEngine(t)
	ts := []authz.Tuple{
		{User: "tenant:kt", Relation: "tenant", Object: "project:src"},
		{User: "tenant:kt", Relation: "tenant", Object: "project:dst"},
		{User: "project:src", Relation: "project", Object: "ticket:K-1"},
		{User: "team:kt-all#member", Relation: "member", Object: "project:src"},
		{User: "team:kt-all#member", Relation: "viewer", Object: "project:dst"},
	}
	for i := range 30 {
		ts = append(ts, authz.Tuple{User: fmt.Sprintf("user:k%d", i), Relation: "member", Object: "team:kt-all"})
	}
	ts = append(ts, authz.Tuple{User: "user:k7", Relation: "member", Object: "team:kt-b"})
	if err := eng.Write(context.Background(), ts, nil); err != nil {
		t.Fatal(err)
	}
	p := authz.Principal{Kind: authz.KindUser, Tenant: "kt", User: "k0", AuthMethod: "dev"}
	req := filter.FlowRequest{Sources: filter.FlowSources{TicketIDs: []string{"K-1"}}, Destination: filter.FlowDestination{Project: "dst"}}
	for _, cached := range []bool{true, false} {
		spy := &flowSpy{FlowEngine: eng}
		log := &filter.MemoryLog{}
		cfg := filter.FlowConfig{ModelDSL: authz.ModelDSL}
		if !cached {
			cfg.CacheEntries = -1
		}
		fl := filter.NewFlow(cfg, revisionedSpy{spy, eng}, log, log)
		check := func(want bool) int {
			t.Helper()
			spy.mu.Lock()
			spy.lists = 0
			spy.mu.Unlock()
			r, err := fl.Check(context.Background(), p, req)
			if err != nil || r.Allowed != want || r.Audience != 30 {
				t.Fatalf("cached=%v: %+v %v, want allowed=%v over 30 users", cached, r, err, want)
			}
			return spy.lists
		}
		if n := check(true); n == 0 {
			t.Fatalf("cached=%v: the first check listed nothing", cached)
		}
		if n := check(true); (n == 0) != cached {
			t.Errorf("cached=%v: the second check at the same revision made %d listings", cached, n)
		}
		// A team's block: its members are listed (a user's block is read).
		block := []authz.Tuple{{User: "team:kt-b#member", Relation: "blocked", Object: "ticket:K-1"}}
		if err := eng.Write(context.Background(), block, nil); err != nil {
			t.Fatal(err)
		}
		if n := check(false); n == 0 {
			t.Errorf("cached=%v: after a write the check listed nothing", cached)
		}
		if err := eng.Write(context.Background(), nil, block); err != nil {
			t.Fatal(err)
		}
		check(true)
		if st := fl.CacheStats(); cached != (st.Hits > 0) {
			t.Errorf("cached=%v: cache stats %+v", cached, st)
		}
	}
}

// TestFlowDecomposition: the ways the checker takes audiences apart (service
// accounts, shares and blocks from direct tuples, a project's users as its
// direct users, teams and tenant admins, a source project listed once plus the
// ticket's shares and blocks) against fixed answers, in every configuration: a
// blocked service account, a user blocked through a team, direct shares to a
// user and a service account outside the source project's audience, and a
// destination ticket whose block removes a service account from its audience.
// A decomposition that forgot a block or a share answers differently.
func TestFlowDecomposition(t *testing.T) {
	eng := memoryEngine(t)
	ctx := context.Background()
	write := func(ts ...authz.Tuple) {
		t.Helper()
		if err := eng.Write(ctx, ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	tu := func(u, r, o string) authz.Tuple { return authz.Tuple{User: u, Relation: r, Object: o} }
	write(
		tu("tenant:dc", "tenant", "project:src"), tu("tenant:dc", "tenant", "project:dst"), tu("tenant:dc", "tenant", "project:dst2"),
		tu("project:src", "project", "ticket:D-1"), tu("project:src", "project", "ticket:D-2"), tu("project:src", "project", "ticket:D-3"),
		tu("user:a1", "member", "team:dc-a"), tu("user:a2", "member", "team:dc-a"), tu("user:a2", "member", "team:dc-b"),
		tu("team:dc-a#member", "member", "project:src"), tu("team:dc-a#member", "viewer", "project:dst"), tu("team:dc-a#member", "viewer", "project:dst2"),
		tu("service_account:dc-sa1", "member", "project:src"), tu("service_account:dc-sa1", "viewer", "project:dst"),
		// Outside src's audience, but shared D-3.
		tu("user:x1", "viewer", "project:dst2"), tu("service_account:dc-sa2", "member", "project:dst2"),
		tu("user:x1", "viewer", "ticket:D-3"), tu("service_account:dc-sa2", "editor", "ticket:D-3"),
		// A tenant admin sees every project's tickets.
		tu("user:ad", "admin", "tenant:dc"),
		// A team's share: x1 sees D-4 through team dc-c.
		tu("project:src", "project", "ticket:D-4"), tu("user:x1", "member", "team:dc-c"), tu("team:dc-c#member", "editor", "ticket:D-4"),
		// Blocks: a service account on D-1, a team (so a2) on D-2.
		tu("service_account:dc-sa1", "blocked", "ticket:D-1"), tu("team:dc-b#member", "blocked", "ticket:D-2"),
	)
	p := authz.Principal{Kind: authz.KindUser, Tenant: "dc", User: "a1", AuthMethod: "dev"}
	type want struct {
		allowed            bool
		audience, excluded int
	}
	cases := []struct {
		name    string
		sources []string
		dest    filter.FlowDestination
		want    want
	}{
		// dst: a1, a2, sa1 and the admin ad; sa1 is blocked on D-1.
		{"blocked service account", []string{"D-1"}, filter.FlowDestination{Project: "dst"}, want{false, 4, 1}},
		// a2 is blocked on D-2 through team dc-b.
		{"user blocked through a team", []string{"D-2"}, filter.FlowDestination{Project: "dst"}, want{false, 4, 1}},
		{"service account and team block together", []string{"D-1", "D-2"}, filter.FlowDestination{Project: "dst"}, want{false, 4, 2}},
		// dst2: a1, a2, x1, sa2, ad; x1 and sa2 see D-3 through its shares only.
		{"direct shares outside the project", []string{"D-3"}, filter.FlowDestination{Project: "dst2"}, want{true, 5, 0}},
		{"a team's share", []string{"D-4"}, filter.FlowDestination{Project: "dst2"}, want{false, 5, 1}},
		{"shares do not reach another ticket", []string{"D-3", "D-1"}, filter.FlowDestination{Project: "dst2"}, want{false, 5, 2}},
		// D-1's audience: src's (a1, a2, sa1, ad) minus blocked sa1; a2 cannot view D-2.
		{"destination ticket's block", []string{"D-2"}, filter.FlowDestination{Ticket: "D-1"}, want{false, 3, 1}},
		{"destination ticket, allowed", []string{"D-3"}, filter.FlowDestination{Ticket: "D-1"}, want{true, 3, 0}},
		{"service accounts named", []string{"D-1"}, filter.FlowDestination{Principals: []string{"service_account:dc-sa1", "service_account:dc-sa2", "user:a1"}}, want{false, 3, 2}},
	}
	foreign := foreignEngine{eng}
	log := &filter.MemoryLog{}
	configs := map[string]*filter.Flow{
		"pairs":                        filter.NewFlow(filter.FlowConfig{PairChecks: 1 << 30}, eng, log, log),
		"listed whole, direct SAs":     filter.NewFlow(filter.FlowConfig{PairChecks: -1, CacheEntries: -1}, eng, log, log),
		"per project, direct SAs":      filter.NewFlow(filter.FlowConfig{PairChecks: -1, ModelDSL: authz.ModelDSL}, eng, log, log),
		"per project, engine SAs":      filter.NewFlow(filter.FlowConfig{PairChecks: -1, ModelDSL: authz.ModelDSL}, foreign, log, log),
		"listed whole, engine SAs":     filter.NewFlow(filter.FlowConfig{PairChecks: -1}, foreign, log, log),
		"default (listings kept)":      filter.NewFlow(filter.FlowConfig{ModelDSL: authz.ModelDSL}, eng, log, log),
		"per project, kept, pairs off": filter.NewFlow(filter.FlowConfig{PairChecks: -1, ModelDSL: authz.ModelDSL}, eng, log, log),
	}
	for name, fl := range configs {
		for _, c := range cases {
			for range 2 { // the second time from kept listings, where kept
				r, err := fl.Check(ctx, p, filter.FlowRequest{Sources: filter.FlowSources{TicketIDs: c.sources}, Destination: c.dest})
				if err != nil {
					t.Fatalf("%s, %s: %v", name, c.name, err)
				}
				if got := (want{r.Allowed, r.Audience, r.Excluded}); got != c.want {
					t.Errorf("%s, %s: got %+v, want %+v (%q)", name, c.name, got, c.want, r.Reasons)
				}
			}
		}
	}
	for _, name := range []string{"listed whole, direct SAs", "per project, direct SAs"} {
		if configs[name].CacheStats().Direct == 0 {
			t.Errorf("%s: no service-account listing was read from direct tuples", name)
		}
	}
	if configs["per project, engine SAs"].CacheStats().Direct != 0 {
		t.Errorf("a checker of another model read service accounts from tuples")
	}
}

// TestFlowKeepsListingsAcrossTicketWrites: a write to another ticket keeps
// every listing (the next check lists nothing), a write to a source ticket
// drops only that ticket's listings (its new block is seen at once, the
// projects' listings stay), and a write to a project drops everything.
// Against the old cache, which dropped everything on any write, the first two
// checks list the projects again.
func TestFlowKeepsListingsAcrossTicketWrites(t *testing.T) {
	eng := memoryEngine(t)
	ctx := context.Background()
	ts := []authz.Tuple{
		{User: "tenant:kw", Relation: "tenant", Object: "project:src"},
		{User: "tenant:kw", Relation: "tenant", Object: "project:dst"},
		{User: "project:src", Relation: "project", Object: "ticket:W-1"},
		{User: "project:src", Relation: "project", Object: "ticket:W-2"},
		{User: "team:kw-all#member", Relation: "member", Object: "project:src"},
		{User: "team:kw-all#member", Relation: "viewer", Object: "project:dst"},
		{User: "user:w1", Relation: "viewer", Object: "ticket:W-1"},
	}
	for i := range 20 {
		ts = append(ts, authz.Tuple{User: fmt.Sprintf("user:w%d", i), Relation: "member", Object: "team:kw-all"})
	}
	ts = append(ts, authz.Tuple{User: "user:w7", Relation: "member", Object: "team:kw-b"})
	if err := eng.Write(ctx, ts, nil); err != nil {
		t.Fatal(err)
	}
	spy := &flowSpy{FlowEngine: eng}
	log := &filter.MemoryLog{}
	fl := filter.NewFlow(filter.FlowConfig{ModelDSL: authz.ModelDSL, PairChecks: -1}, revisionedSpy{spy, eng}, log, log)
	p := authz.Principal{Kind: authz.KindUser, Tenant: "kw", User: "w0", AuthMethod: "dev"}
	req := filter.FlowRequest{Sources: filter.FlowSources{TicketIDs: []string{"W-1"}}, Destination: filter.FlowDestination{Project: "dst"}}
	check := func(want bool, excluded int) []string {
		t.Helper()
		spy.mu.Lock()
		spy.listed = nil
		spy.mu.Unlock()
		r, err := fl.Check(ctx, p, req)
		if err != nil || r.Allowed != want || r.Audience != 20 || r.Excluded != excluded {
			t.Fatalf("%+v %v, want allowed=%v over 20 users, %d excluded", r, err, want, excluded)
		}
		spy.mu.Lock()
		defer spy.mu.Unlock()
		slices.Sort(spy.listed)
		return spy.listed
	}
	write := func(w, d []authz.Tuple) {
		t.Helper()
		if err := eng.Write(ctx, w, d); err != nil {
			t.Fatal(err)
		}
	}
	if got := check(true, 0); len(got) == 0 {
		t.Fatal("the first check listed nothing")
	}
	block := []authz.Tuple{{User: "team:kw-b#member", Relation: "blocked", Object: "ticket:W-1"}}
	// Another ticket: nothing of this check changed.
	write([]authz.Tuple{{User: "user:w3", Relation: "viewer", Object: "ticket:W-2"}}, nil)
	if got := check(true, 0); len(got) != 0 {
		t.Errorf("after a write to another ticket the check listed %q", got)
	}
	// The source ticket: its block (a team's) counts; only what the block
	// names is listed, the projects' listings are kept.
	write(block, nil)
	if got := check(false, 1); !slices.Equal(got, []string{"team:kw-b#member@user"}) {
		t.Errorf("after a write to the source ticket the check listed %q, want the blocked team only", got)
	}
	write(nil, block)
	check(true, 0)
	// A project: everything again (the projects' audiences are their
	// teams' and their tenant's admins, listed once for both).
	write([]authz.Tuple{{User: "user:w99", Relation: "member", Object: "project:src"}}, nil)
	got := check(true, 0)
	if !slices.Equal(got, []string{"team:kw-all#member@user", "tenant:kw#admin@user"}) {
		t.Errorf("after a write to a project the check listed %q, want every listing again", got)
	}
	if st := fl.CacheStats(); st.Kept < 2 {
		t.Errorf("cache stats %+v: want moves that kept listings", st)
	}
}
