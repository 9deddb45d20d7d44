package filter_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
)

// ref is the independent reference evaluator of authz/model.fga: the stored
// tuples in plain maps, and the model's rules written out by hand. It shares
// nothing with OpenFGA.
type ref struct {
	rel map[string]map[string]*authz.Condition // "object#relation" -> user -> condition
}

func newRef() *ref { return &ref{rel: map[string]map[string]*authz.Condition{}} }

func (r *ref) write(t authz.Tuple) {
	k := t.Object + "#" + t.Relation
	if r.rel[k] == nil {
		r.rel[k] = map[string]*authz.Condition{}
	}
	r.rel[k][t.User] = t.Condition
}

func (r *ref) delete(t authz.Tuple) { delete(r.rel[t.Object+"#"+t.Relation], t.User) }

// has: subj is in object#relation directly or through (nested) team membership.
func (r *ref) has(object, relation, subj string, seen map[string]bool) bool {
	for u := range r.rel[object+"#"+relation] {
		if u == subj {
			return true
		}
		if team, ok := strings.CutSuffix(u, "#member"); ok && strings.HasPrefix(team, "team:") && !seen[team] {
			if seen == nil {
				seen = map[string]bool{}
			}
			seen[team] = true
			if r.has(team, "member", subj, seen) {
				return true
			}
		}
	}
	return false
}

func (r *ref) users(object, relation string) []string {
	var out []string
	for u := range r.rel[object+"#"+relation] {
		out = append(out, u)
	}
	return out
}

func (r *ref) projectCanView(project, subj string) bool {
	if r.has(project, "owner", subj, nil) || r.has(project, "member", subj, nil) || r.has(project, "viewer", subj, nil) {
		return true
	}
	for _, t := range r.users(project, "tenant") {
		if r.has(t, "admin", subj, nil) {
			return true
		}
	}
	return false
}

// delegated: a grant on project of the delegation user~agent, whose delegator is
// the user (the request's contextual active tuple names only that delegation),
// not expired at now.
func (r *ref) delegated(project, user, agent string, now time.Time) bool {
	d := "delegation:" + authz.DelegationID(user, agent)
	c, ok := r.rel[project+"#granted"][d]
	if !ok || !r.has(d, "delegator", "user:"+user, nil) {
		return false
	}
	if c == nil {
		return true
	}
	exp, err := time.Parse(time.RFC3339, c.Context["expires_at"].(string))
	return err == nil && now.Before(exp)
}

func (r *ref) ticketCanView(ticket, subj string) bool {
	if r.has(ticket, "blocked", subj, nil) {
		return false
	}
	if r.has(ticket, "viewer", subj, nil) || r.has(ticket, "editor", subj, nil) {
		return true
	}
	for _, p := range r.users(ticket, "project") {
		if r.projectCanView(p, subj) {
			return true
		}
	}
	return false
}

// visible is the reference answer for a principal on a ticket id.
func (r *ref) visible(p authz.Principal, ticketID string, now time.Time) bool {
	obj := "ticket:" + ticketID
	if !r.ticketCanView(obj, p.Subject()) {
		return false
	}
	// A key minted by a tenant admin sees only what its minter sees too.
	if p.KeyMinter != "" && !r.ticketCanView(obj, "user:"+p.KeyMinter) {
		return false
	}
	if p.Kind != authz.KindAgent {
		return true
	}
	for _, proj := range r.users(obj, "project") {
		if r.delegated(proj, p.User, p.Agent, now) {
			return true
		}
	}
	return false
}

// world is one random org loaded into the real embedded engine and store.
type world struct {
	t        testing.TB
	rng      *rand.Rand
	eng      authz.Engine
	store    *storeembedded.Store
	emb      *retrieval.Hashing
	ref      *ref
	tenants  []string
	users    map[string][]string // tenant -> user ids
	teams    map[string][]string
	sas      map[string][]string
	projects map[string][]string
	tickets  []*wticket
	agents   []string
	drift    map[string]bool // ticket ids whose engine project differs from the index
}

type wticket struct {
	id, tenant, project string // project as indexed
	chunks              int
}

var vocab = strings.Fields(`database timeout login outage payment invoice latency
kubernetes deploy rollback certificate expired cache eviction memory leak queue
backlog webhook retry billing refund export report dashboard search index shard
replica failover dns proxy gateway token session cookie mobile android ios crash`)

func (w *world) text(n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = vocab[w.rng.IntN(len(vocab))]
	}
	return strings.Join(ws, " ")
}

func (w *world) write(writes, deletes []authz.Tuple) {
	w.t.Helper()
	if err := w.eng.Write(context.Background(), writes, deletes); err != nil {
		w.t.Fatalf("write %v delete %v: %v", writes, deletes, err)
	}
	for _, t := range deletes {
		w.ref.delete(t)
	}
	for _, t := range writes {
		w.ref.write(t)
	}
}

func pick[T any](rng *rand.Rand, s []T) T { return s[rng.IntN(len(s))] }

// newWorld builds a random org of two tenants. Ids are prefixed with the seed's
// tenant names so they are global like the real ones.
func newWorld(t testing.TB, eng authz.Engine, seed uint64, ticketsPerTenant int) *world {
	ctx := context.Background()
	emb := retrieval.NewHashing(retrieval.HashingConfig{Dim: 64})
	store, err := storeembedded.Open(ctx, storeembedded.Config{Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	w := &world{
		t: t, rng: rand.New(rand.NewPCG(seed, 99)), eng: eng, store: store, emb: emb, ref: newRef(),
		users: map[string][]string{}, teams: map[string][]string{}, sas: map[string][]string{},
		projects: map[string][]string{}, agents: []string{"copilot", "bot"}, drift: map[string]bool{},
	}
	var tuples []authz.Tuple
	for ti := range 2 {
		ten := fmt.Sprintf("s%d-t%d", seed, ti)
		w.tenants = append(w.tenants, ten)
		for i := range 6 {
			w.users[ten] = append(w.users[ten], fmt.Sprintf("%s-u%d", ten, i))
		}
		for i := range 3 {
			w.teams[ten] = append(w.teams[ten], fmt.Sprintf("%s-team%d", ten, i))
		}
		for i := range 2 {
			sa := fmt.Sprintf("%s-sa%d", ten, i)
			w.sas[ten] = append(w.sas[ten], sa)
			tuples = append(tuples, authz.Tuple{User: "tenant:" + ten, Relation: "tenant", Object: "service_account:" + sa})
		}
		for i := range 4 {
			p := fmt.Sprintf("%s-p%d", ten, i)
			w.projects[ten] = append(w.projects[ten], p)
			tuples = append(tuples, authz.Tuple{User: "tenant:" + ten, Relation: "tenant", Object: "project:" + p})
		}
		for i := range ticketsPerTenant {
			tk := &wticket{id: fmt.Sprintf("%s-T%d", ten, i), tenant: ten, project: pick(w.rng, w.projects[ten]), chunks: 1 + w.rng.IntN(3)}
			w.tickets = append(w.tickets, tk)
			tuples = append(tuples, authz.Tuple{User: "project:" + tk.project, Relation: "project", Object: "ticket:" + tk.id})
			w.index(tk)
		}
	}
	w.write(tuples, nil)
	for range 25 * len(w.tenants) {
		w.mutate()
	}
	return w
}

// index upserts a ticket with random chunk texts, embedded by the hashing embedder.
func (w *world) index(tk *wticket) {
	ctx := context.Background()
	texts := make([]string, tk.chunks)
	for i := range texts {
		texts[i] = w.text(6 + w.rng.IntN(10))
	}
	vecs, err := w.emb.Embed(ctx, texts)
	if err != nil {
		w.t.Fatal(err)
	}
	chunks := make([]retrieval.Chunk, len(texts))
	for i := range texts {
		chunks[i] = retrieval.Chunk{Ordinal: i, Text: texts[i], Vector: vecs[i]}
	}
	tick := retrieval.Ticket{ID: tk.id, Tenant: tk.tenant, Project: tk.project, Title: "ticket " + tk.id, Body: strings.Join(texts, " "), UpdatedAt: time.Unix(1, 0)}
	if err := w.store.Upsert(ctx, tick, chunks); err != nil {
		w.t.Fatal(err)
	}
}

// subject returns a random user, team userset or service account of tenant ten
// (usersets and service accounts only where the relation allows them).
func (w *world) subject(ten string, teams, sas bool) string {
	switch n := w.rng.IntN(10); {
	case teams && n < 3:
		return "team:" + pick(w.rng, w.teams[ten]) + "#member"
	case sas && n < 5:
		return "service_account:" + pick(w.rng, w.sas[ten])
	default:
		return "user:" + pick(w.rng, w.users[ten])
	}
}

// mutate applies one random tuple change (or a ticket move) to engine and reference.
func (w *world) mutate() {
	ten := pick(w.rng, w.tenants)
	// Occasionally reach across tenants: a user of one tenant in another's project.
	other := ten
	if w.rng.IntN(10) == 0 {
		other = pick(w.rng, w.tenants)
	}
	proj := "project:" + pick(w.rng, w.projects[ten])
	tk := pick(w.rng, w.tickets)
	var tu authz.Tuple
	switch w.rng.IntN(12) {
	case 0: // nested teams, acyclic by index order
		ts := w.teams[ten]
		i := w.rng.IntN(len(ts))
		if j := w.rng.IntN(len(ts)); j < i && w.rng.IntN(2) == 0 {
			tu = authz.Tuple{User: "team:" + ts[j] + "#member", Relation: "member", Object: "team:" + ts[i]}
		} else {
			tu = authz.Tuple{User: "user:" + pick(w.rng, w.users[other]), Relation: "member", Object: "team:" + ts[i]}
		}
	case 1:
		tu = authz.Tuple{User: w.subject(ten, true, false), Relation: pick(w.rng, []string{"admin", "billing_manager"}), Object: "tenant:" + ten}
	case 2:
		tu = authz.Tuple{User: w.subject(other, true, false), Relation: "owner", Object: proj}
	case 3, 4:
		tu = authz.Tuple{User: w.subject(other, true, true), Relation: pick(w.rng, []string{"member", "viewer"}), Object: proj}
	case 5:
		tu = authz.Tuple{User: w.subject(tk.tenant, true, true), Relation: pick(w.rng, []string{"viewer", "editor"}), Object: "ticket:" + tk.id}
	case 6:
		tu = authz.Tuple{User: w.subject(tk.tenant, true, true), Relation: "blocked", Object: "ticket:" + tk.id}
	case 7, 8: // a grant, maybe with an expiry in the past or the future
		u := pick(w.rng, w.users[ten])
		a := pick(w.rng, w.agents)
		d := "delegation:" + authz.DelegationID(u, a)
		tu = authz.Tuple{User: d, Relation: "granted", Object: proj}
		switch w.rng.IntN(3) {
		case 0:
			tu.Condition = &authz.Condition{Name: "not_expired", Context: map[string]any{"expires_at": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}}
		case 1:
			tu.Condition = &authz.Condition{Name: "not_expired", Context: map[string]any{"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}}
		}
		extra := []authz.Tuple{{User: "user:" + u, Relation: "delegator", Object: d}, {User: "agent:" + a, Relation: "agent", Object: d}}
		if _, ok := w.ref.rel[tu.Object+"#"+tu.Relation][tu.User]; ok {
			w.write(nil, []authz.Tuple{tu})
		} else {
			w.write(append(extra, tu), nil)
		}
		return
	case 9: // move a ticket in both engine and index
		w.move(tk, true)
		return
	case 10: // move a ticket in the engine only: the index drifts
		w.move(tk, false)
		return
	case 11:
		w.repair()
		return
	}
	if _, ok := w.ref.rel[tu.Object+"#"+tu.Relation][tu.User]; ok {
		w.write(nil, []authz.Tuple{tu})
	} else {
		w.write([]authz.Tuple{tu}, nil)
	}
}

// repair moves drifted tickets in the index to their engine project, like
// `clearance reconcile --fix`.
func (w *world) repair() {
	for _, x := range w.tickets {
		if !w.drift[x.id] {
			continue
		}
		engProj := strings.TrimPrefix(w.ref.users("ticket:"+x.id, "project")[0], "project:")
		if err := w.store.Move(context.Background(), x.id, engProj); err != nil {
			w.t.Fatal(err)
		}
		x.project = engProj
		delete(w.drift, x.id)
	}
}

func (w *world) move(tk *wticket, index bool) {
	cur := w.ref.users("ticket:"+tk.id, "project")
	to := "project:" + pick(w.rng, w.projects[tk.tenant])
	if len(cur) == 1 && cur[0] == to {
		return
	}
	var del []authz.Tuple
	for _, c := range cur {
		del = append(del, authz.Tuple{User: c, Relation: "project", Object: "ticket:" + tk.id})
	}
	w.write([]authz.Tuple{{User: to, Relation: "project", Object: "ticket:" + tk.id}}, del)
	to = strings.TrimPrefix(to, "project:")
	if index {
		if err := w.store.Move(context.Background(), tk.id, to); err != nil {
			w.t.Fatal(err)
		}
		tk.project = to
		delete(w.drift, tk.id)
		return
	}
	w.drift[tk.id] = to != tk.project
	if !w.drift[tk.id] {
		delete(w.drift, tk.id)
	}
}

// principal returns a random principal of a random tenant, sometimes with token
// narrowing.
func (w *world) principal() authz.Principal {
	ten := pick(w.rng, w.tenants)
	var p authz.Principal
	switch w.rng.IntN(3) {
	case 0:
		p = authz.Principal{Kind: authz.KindUser, Tenant: ten, User: pick(w.rng, w.users[ten])}
	case 1:
		p = authz.Principal{Kind: authz.KindAgent, Tenant: ten, User: pick(w.rng, w.users[ten]), Agent: pick(w.rng, w.agents)}
	default:
		p = authz.Principal{Kind: authz.KindServiceAccount, Tenant: ten, ServiceAccount: pick(w.rng, w.sas[ten])}
		if w.rng.IntN(2) == 0 {
			// A key minted by one of the tenant's users (admin or not: the
			// bound is whatever that user may view when the key is used).
			p.KeyMinter = pick(w.rng, w.users[ten])
		}
	}
	p.AuthMethod = "dev"
	if w.rng.IntN(6) == 0 {
		p.Narrowing = &authz.Narrowing{Projects: w.someProjects()}
	}
	return p
}

// someProjects names 0-2 projects, mostly of any tenant.
func (w *world) someProjects() []string {
	out := []string{}
	for range w.rng.IntN(3) {
		out = append(out, pick(w.rng, w.projects[pick(w.rng, w.tenants)]))
	}
	return out
}

func (w *world) request() filter.Request {
	req := filter.Request{Query: w.text(1 + w.rng.IntN(3)), TopK: pick(w.rng, []int{1, 3, 5, 10}), GroupByTicket: w.rng.IntN(4) == 0}
	if w.rng.IntN(5) == 0 {
		req.Filters.Projects = w.someProjects()
	}
	if w.rng.IntN(6) == 0 {
		req.Intent = filter.Intent{Description: "triage", Projects: w.someProjects()}
	}
	return req
}

// expected is the reference's exact answer: every chunk of the tenant ranked by
// the store's own scores (tenant-wide, unfiltered), kept when the reference says
// the principal may view the ticket and every narrowing admits its project.
func (w *world) expected(p authz.Principal, req filter.Request) []filter.Result {
	ctx := context.Background()
	vec, err := w.emb.Embed(ctx, []string{req.Query})
	if err != nil {
		w.t.Fatal(err)
	}
	res, err := w.store.Search(ctx, retrieval.SearchRequest{Vector: vec[0], Filter: retrieval.Filter{Tenant: p.Tenant, AllProjects: true}, K: 1 << 20})
	if err != nil {
		w.t.Fatal(err)
	}
	all := res.Hits
	admits := func(list []string, proj string) bool { return len(list) == 0 || slices.Contains(list, proj) }
	now := time.Now()
	var out []filter.Result
	seen := map[string]bool{}
	for _, h := range all {
		if !w.ref.visible(p, h.TicketID, now) || !admits(req.Filters.Projects, h.Project) || !admits(req.Intent.Projects, h.Project) {
			continue
		}
		if p.Narrowing != nil && !slices.Contains(p.Narrowing.Projects, h.Project) {
			continue
		}
		if req.GroupByTicket && seen[h.TicketID] {
			continue
		}
		seen[h.TicketID] = true
		out = append(out, filter.Result{TicketID: h.TicketID, ProjectID: h.Project, TenantID: h.Tenant, Chunk: h.Ordinal, Score: h.Score})
		if len(out) == req.TopK {
			break
		}
	}
	return out
}
