package filter

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// Search answers req for p: only chunks of tickets p may view right now, ranked by
// score, at most req.TopK of them, with the status saying whether more visible
// matches may exist. Every answer (and every failure) leaves one audit record; if
// the record cannot be appended the search fails with clearance.ErrUnavailable.
// Backend failures are errors wrapping clearance.ErrUnavailable, never data.
func (pl *Planner) Search(ctx context.Context, p authz.Principal, req Request) (Response, error) {
	if err := checkPrincipal(p); err != nil {
		return Response{}, err
	}
	switch {
	case strings.TrimSpace(req.Query) == "":
		return Response{}, clearance.Invalid("query", "is required")
	case req.TopK < 1:
		return Response{}, clearance.Invalid("top_k", "must be at least 1")
	}
	rec := pl.record(p, cmp.Or(req.Kind, "search"), req.RequestID)
	rec.TopK = req.TopK
	rec.QueryHash = audit.QueryHash(req.Query)
	if !pl.cfg.HashQueries {
		rec.Query = req.Query
	}
	resp, err := pl.search(ctx, p, req, rec)
	if err := pl.finish(ctx, rec, &resp.AuditID, err); err != nil {
		return Response{}, err
	}
	return resp, nil
}

// checkPrincipal refuses a principal the middleware cannot have produced: one
// without a tenant or without the ids its kind needs (an agent without its user
// would be evaluated on "user:").
func checkPrincipal(p authz.Principal) error {
	ok := p.Tenant != ""
	switch p.Kind {
	case authz.KindUser:
		ok = ok && p.User != ""
	case authz.KindAgent:
		ok = ok && p.User != "" && p.Agent != ""
	case authz.KindServiceAccount:
		ok = ok && p.ServiceAccount != ""
	default:
		ok = false
	}
	// Only a service account's key has a minter to bound it.
	ok = ok && (p.KeyMinter == "" || p.Kind == authz.KindServiceAccount)
	if !ok {
		return fmt.Errorf("filter: incomplete principal %s: %w", p, clearance.ErrUnauthenticated)
	}
	return nil
}

// record starts an audit record.
func (pl *Planner) record(p authz.Principal, kind, requestID string) *audit.Record {
	return &audit.Record{
		Time:        pl.cfg.Now(),
		Kind:        kind,
		Tenant:      p.Tenant,
		Principal:   p,
		RequestID:   requestID,
		ModelID:     pl.eng.ModelID(),
		Consistency: authz.HigherConsistency.String(),
		Latency:     map[string]int64{},
	}
}

// finish appends rec (status "error" when err is set) and returns the error the
// caller must see: err itself, or ErrUnavailable when the record could not be
// written.
func (pl *Planner) finish(ctx context.Context, rec *audit.Record, auditID *string, err error) error {
	if pl.cfg.HashQueries {
		rec.Narrowing.IntentText = ""
	}
	if err != nil {
		rec.Status = "error"
		rec.Error = err.Error()
		// The caller's context may be what failed; the record is still owed.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if aerr := pl.log.Append(actx, rec); aerr != nil {
			pl.cfg.Logger.Warn("filter: audit record of a failed request not written", "error", aerr, "kind", rec.Kind)
		}
		return err
	}
	if aerr := pl.log.Append(ctx, rec); aerr != nil {
		return unavailable("append audit record", aerr)
	}
	*auditID = rec.ID
	pl.cfg.Logger.Debug("filter: decision", "audit_id", rec.ID, "kind", rec.Kind, "principal", rec.Principal.String(),
		"path", rec.Plan.Path, "status", rec.Status, "rounds", rec.Plan.Rounds, "checked", rec.Plan.Checked,
		"denied", rec.Plan.Denied, "cache_hit", rec.Plan.CacheHit, "total_us", rec.Latency["total"])
	return nil
}

func since(t time.Time) int64 { return time.Since(t).Microseconds() }

// search runs the pipeline and fills rec; finish appends it.
func (pl *Planner) search(ctx context.Context, p authz.Principal, req Request, rec *audit.Record) (Response, error) {
	start := time.Now()
	defer func() { rec.Latency["total"] = since(start) }()

	mode := cmp.Or(req.Mode, pl.cfg.Mode)
	rec.Plan.Mode = string(mode)
	switch mode {
	case ModeVector:
	case ModeLexical, ModeHybrid:
		if pl.lex == nil {
			return Response{}, fmt.Errorf("search mode %q: this store has no lexical index: %w", mode, retrieval.ErrUnsupported)
		}
	default:
		return Response{}, clearance.Invalid("mode", "must be one of hybrid, vector, lexical")
	}

	// The query's embedding does not depend on the pre-filter: it runs
	// alongside it (with a remote embedder, the two round trips overlap instead
	// of adding up). Its result is used only after the pre-filter succeeded,
	// and the goroutine is always waited for.
	var (
		vecs     [][]float32
		embedErr error
		embedUS  int64
	)
	embedded := make(chan struct{})
	ectx, cancelEmbed := context.WithCancel(ctx)
	defer func() { cancelEmbed(); <-embedded }()
	if mode != ModeLexical {
		go func() {
			defer close(embedded)
			t := time.Now()
			vecs, embedErr = pl.emb.Embed(ectx, []string{req.Query})
			embedUS = since(t)
		}()
	} else {
		close(embedded)
	}

	pf, err := pl.prefilter(ctx, p, req)
	pf.plan.Mode = string(mode)
	rec.Latency["prefilter"] = since(start)
	rec.Narrowing = pf.narrowing
	rec.Plan = pf.plan
	rec.Plan.Path = pf.path
	if err != nil {
		return Response{}, err
	}
	if pf.path == PathEmpty {
		rec.Status = string(Exhausted)
		return Response{Results: []Result{}, Status: Exhausted, Exact: true}, nil
	}

	r := run{pl: pl, p: p, req: req, pf: pf, rec: rec, mode: mode, start: start, now: pl.cfg.Now(), decided: map[string]bool{}, returned: map[string]bool{}, exact: true}
	if mode != ModeLexical {
		<-embedded
		rec.Latency["embed"] = embedUS
		if embedErr != nil {
			return Response{}, unavailable("embed query", embedErr)
		}
		if len(vecs) != 1 {
			return Response{}, unavailable("embed query", fmt.Errorf("embedder returned %d vectors for 1 text", len(vecs)))
		}
		r.vec = vecs[0]
	}
	if mode != ModeVector {
		r.terms = lexical.Terms(req.Query)
	}
	if pl.decisions.enabled() {
		if pf.rev.Key != "" {
			r.decisionState = decisionState{model: pl.eng.ModelID(), rev: pf.rev}
		}
		r.decisionPrefix = decisionPrefix(p)
	}
	var status Status
	if mode == ModeHybrid {
		status, err = r.hybrid(ctx)
	} else {
		status, err = r.loop(ctx)
	}
	rec.Plan = r.pf.plan
	rec.Plan.Path = pf.path
	rec.Latency["search"] = r.searchUS
	rec.Latency["check"] = r.checkUS
	if err != nil {
		return Response{}, err
	}
	if !r.exact && status != Partial {
		// complete and exhausted are claims about the exact visible ranking,
		// which an approximate page cannot support.
		r.pf.plan.Notes = append(r.pf.plan.Notes, "store: approximate plan, "+string(status)+" reported as partial")
		rec.Plan.Notes = r.pf.plan.Notes
		status = Partial
	}
	rec.Plan.Exact = &r.exact
	rec.Status = string(status)
	return Response{Results: r.results, Status: status, Exact: r.exact}, nil
}

// run is the state of one search's over-fetch loop.
type run struct {
	pl    *Planner
	p     authz.Principal
	req   Request
	pf    prefilter
	rec   *audit.Record
	mode  Mode
	vec   []float32 // the query's vector (vector and hybrid modes)
	terms []string  // the query's terms (lexical and hybrid modes)
	start time.Time
	// now is the request time every check is evaluated at (current_time), and
	// the time cached decisions are valid for.
	now time.Time

	// The decision cache: the state (model and revision) this request reads at,
	// "" for none, and the key prefix of this principal's decisions.
	decisionState  decisionState
	decisionPrefix string
	cachedN        int
	// The time bound of this principal's allowed decisions, read once.
	bound     time.Time
	boundErr  error
	boundRead bool

	decided  map[string]bool // ticket id -> allowed, for this request only
	returned map[string]bool // tickets with a result (group_by_ticket)
	results  []Result
	checked  int // tickets checked
	allowed  int // of them allowed
	offset   int
	exact    bool // every store page so far came from an exact plan
	searchUS int64
	checkUS  int64
}

// loop pages through the store until k results, exhaustion or the budget.
func (r *run) loop(ctx context.Context) (Status, error) {
	cfg := r.pl.cfg
	k := r.req.TopK
	fetch := max(cfg.MinFetch, 2*k)
	if r.pf.path == PathPostfilterOnly {
		fetch *= cfg.PostFilterOnlyFactor
	}
	for round := 0; ; round++ {
		switch {
		case round >= cfg.MaxRounds:
			r.pf.plan.Notes = append(r.pf.plan.Notes, "budget: max rounds")
			return Partial, nil
		case r.pf.plan.Fetched >= cfg.MaxCandidates:
			r.pf.plan.Notes = append(r.pf.plan.Notes, "budget: max candidates")
			return Partial, nil
		case round > 0 && time.Since(r.start) >= cfg.Deadline:
			r.pf.plan.Notes = append(r.pf.plan.Notes, "budget: deadline")
			return Partial, nil
		}
		n := min(fetch, cfg.MaxCandidates-r.pf.plan.Fetched)
		hits, err := r.fetch(ctx, r.mode, n, r.offset)
		if err != nil {
			return "", err
		}
		r.offset += len(hits)
		if err := r.take(ctx, hits); err != nil {
			return "", err
		}
		if len(r.results) >= k {
			return Complete, nil
		}
		if len(hits) < n {
			return Exhausted, nil
		}
		// Grow the next page by the observed yield (results per fetched chunk), so
		// a principal who sees little of the filter's candidates pages in few rounds.
		need := k - len(r.results)
		yield := float64(len(r.results)) / float64(r.pf.plan.Fetched)
		if yield == 0 {
			fetch *= 4
		} else {
			fetch = max(cfg.MinFetch, int(math.Ceil(float64(need)/yield*1.5)))
		}
	}
}

// fetch reads one page of an arm's ranking (vector or lexical) under the
// pre-filter and accounts for it in the plan.
func (r *run) fetch(ctx context.Context, arm Mode, n, offset int) ([]retrieval.Hit, error) {
	t := time.Now()
	res, err := r.query(ctx, arm, n, offset)
	r.searchUS += since(t)
	return r.record(res, err)
}

// query reads one page of an arm's ranking. It touches no state of the run, so
// the two arms of a hybrid search may query at once.
func (r *run) query(ctx context.Context, arm Mode, n, offset int) (retrieval.SearchResult, error) {
	if arm == ModeLexical {
		return r.pl.lex.SearchLexical(ctx, retrieval.LexicalRequest{Terms: r.terms, Filter: r.pf.filter, K: n, Offset: offset})
	}
	return r.pl.store.Search(ctx, retrieval.SearchRequest{Vector: r.vec, Filter: r.pf.filter, K: n, Offset: offset})
}

// record accounts for one page in the plan.
func (r *run) record(res retrieval.SearchResult, err error) ([]retrieval.Hit, error) {
	if err != nil {
		return nil, unavailable("search store", err)
	}
	r.exact = r.exact && res.Exact
	if !slices.Contains(r.pf.plan.StorePlans, res.Plan) {
		r.pf.plan.StorePlans = append(r.pf.plan.StorePlans, res.Plan)
	}
	r.pf.plan.Rounds++
	r.pf.plan.Fetched += len(res.Hits)
	return res.Hits, nil
}

// eligible says whether a hit may be considered at all: the store filter has the
// tenant already (checked again here), and narrowing also binds directly shared
// tickets, which the store admits by id.
// admit decides one hit of the final ranking, for the vector and the fused
// path alike: it is returned only when this search's checks allowed its
// ticket, the hit is eligible and the answer has room; the one place a hit
// becomes a result.
func (r *run) admit(h retrieval.Hit, score float32) audit.Decision {
	allowed, checked := r.decided[h.TicketID]
	switch {
	case !r.eligible(h) || !checked:
		return audit.NotChecked
	case !allowed:
		r.pf.plan.Denied++
		return audit.DeniedByCheck
	case len(r.results) >= r.req.TopK || (r.req.GroupByTicket && r.returned[h.TicketID]):
		return audit.BeyondK
	}
	r.returned[h.TicketID] = true
	r.results = append(r.results, Result{
		TicketID: h.TicketID, ProjectID: h.Project, TenantID: h.Tenant, Title: h.Title,
		Snippet: snippet(h.Text, r.pl.cfg.SnippetChars), Chunk: h.Ordinal, Score: score,
	})
	return audit.Returned
}

func (r *run) eligible(h retrieval.Hit) bool {
	return h.Tenant == r.p.Tenant && (r.pf.narrow == nil || r.pf.narrow[h.Project])
}

// take checks the hits of one page in rank order, in batches sized to what is
// still needed, and decides each one.
func (r *run) take(ctx context.Context, hits []retrieval.Hit) error {
	return r.takeInOrder(ctx, len(hits), func(i int) retrieval.Hit { return hits[i] }, func(i int) { r.decide(hits[i]) })
}

// takeInOrder checks n ranked entries (hit gives the i-th's ticket) in order,
// in batches sized to what is still needed, and then decides each with decide,
// until k are returned or the entries run out.
func (r *run) takeInOrder(ctx context.Context, n int, hit func(int) retrieval.Hit, decide func(int)) error {
	k := r.req.TopK
	i := 0
	for i < n && len(r.results) < k {
		// Batch the next undecided tickets; size it by the allow rate seen so far.
		need := k - len(r.results)
		want := need
		if r.checked > 0 || r.pf.path == PathPostfilterOnly {
			rate := float64(r.allowed+1) / float64(r.checked+1)
			want = int(math.Ceil(float64(need)/max(rate, 0.05)*1.25)) + 1
		}
		// Otherwise this is the first batch of an exact pre-filter (listed projects
		// and shares, or the tenant-admin shortcut): only blocks and undelegated
		// shares are denied, so checking exactly what is missing is the likely
		// cheapest plan; a denial costs one more, small batch.
		//
		// want counts results, not tickets: a ticket has several chunks, and
		// each of them is a result (one per ticket with group_by_ticket). The
		// batch is the undecided tickets of the shortest run of entries that
		// would give want results if all of them were allowed: for the first
		// batch, the tickets of the next `need` results, exactly what the
		// floor's BatchCheck(k) checks, instead of `need` tickets, which cover
		// twice as many chunks at two chunks per ticket.
		var batch []string
		inBatch := map[string]bool{}
		counted := map[string]bool{}
		expect := 0
		j := i
		for ; j < n && expect < want; j++ {
			h := hit(j)
			if !r.eligible(h) {
				continue
			}
			allowed, decided := r.decided[h.TicketID]
			if decided && !allowed {
				continue
			}
			if !decided && !inBatch[h.TicketID] {
				inBatch[h.TicketID] = true
				batch = append(batch, h.TicketID)
			}
			if r.req.GroupByTicket && (r.returned[h.TicketID] || counted[h.TicketID]) {
				continue
			}
			counted[h.TicketID] = true
			expect++
		}
		if err := r.check(ctx, batch); err != nil {
			return err
		}
		for ; i < j; i++ {
			decide(i)
		}
	}
	for ; i < n; i++ {
		decide(i)
	}
	return nil
}

// check decides tickets: from the decision cache when it holds the engine's
// answer at this request's revision and time, otherwise by asking the engine
// with HIGHER_CONSISTENCY (revocation shows at once). It remembers the answers
// for this request.
func (r *run) check(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	r.checked += len(ids)
	r.pf.plan.Checked += len(ids)
	before := r.cachedN
	ask := r.cachedChecks(ids)
	r.pf.plan.CachedDecisions += r.cachedN - before
	if len(ask) == 0 {
		return nil
	}
	// Each ticket needs every one of the principal's view checks (one, or two
	// for a key bounded by its minter); they are laid out ticket by ticket.
	per := len(r.p.ViewChecks(""))
	checks := make([]authz.Check, 0, len(ask)*per)
	for _, id := range ask {
		checks = append(checks, r.p.ViewChecks("ticket:"+id)...)
	}
	q := r.pl.query(r.p, authz.HigherConsistency)
	q.Now = r.now
	t := time.Now()
	ok, err := r.pl.eng.BatchCheck(ctx, q, checks)
	r.checkUS += since(t)
	if err != nil {
		return unavailable("check tickets", err)
	}
	if len(ok) != len(checks) {
		return unavailable("check tickets", fmt.Errorf("engine answered %d results for %d checks", len(ok), len(checks)))
	}
	decided := make([]bool, len(ask))
	for i, id := range ask {
		allowed := !slices.Contains(ok[i*per:(i+1)*per], false)
		decided[i] = allowed
		r.decided[id] = allowed
		if allowed {
			r.allowed++
		}
	}
	r.keepChecks(ctx, ask, decided)
	return nil
}

// decide records one hit as a candidate and returns it when allowed and needed.
func (r *run) decide(h retrieval.Hit) {
	if h.Tenant != r.p.Tenant {
		// Never recorded: the record belongs to the caller's tenant.
		r.pl.cfg.Logger.Warn("filter: store returned a hit of another tenant", "ticket", h.TicketID)
		return
	}
	c := audit.Candidate{TicketID: h.TicketID, Project: h.Project, Chunk: h.Ordinal, Score: h.Score}
	c.Decision = r.admit(h, h.Score)
	r.rec.Results = append(r.rec.Results, c)
}

// snippet cuts text to at most n characters on a word boundary, with an ellipsis
// when cut.
func snippet(text string, n int) string {
	text = strings.TrimSpace(text)
	if utf8.RuneCountInString(text) <= n {
		return text
	}
	cut, count := 0, 0
	for i := range text {
		if count == n {
			cut = i
			break
		}
		count++
	}
	s := text[:cut]
	if k := strings.LastIndexFunc(s, unicode.IsSpace); k > n/2 {
		s = s[:k]
	}
	return strings.TrimRightFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) }) + "…"
}
