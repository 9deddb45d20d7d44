package filter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/indexer"
)

// KindFlowCheck is the audit record kind of a flow check.
const KindFlowCheck = "flow_check"

// FlowEngine is what the flow check asks the relationship engine: who can view
// an object (ListUsers) and batched checks. Both authz backends satisfy it.
type FlowEngine interface {
	BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error)
	ListUsers(ctx context.Context, q authz.Query, object, relation, userType string) ([]string, error)
	Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error]
	ModelID() string
}

// FlowRecords reads the audit records a flow check cites (audit.Reader and
// MemoryLog satisfy it). Get answers an error wrapping clearance.ErrNotFound for
// an unknown id.
type FlowRecords interface {
	Get(ctx context.Context, id string) (*audit.Record, error)
}

// FlowConfig bounds flow checks. The zero value is usable.
type FlowConfig struct {
	// MaxAuditIDs, MaxTicketIDs and MaxPrincipals bound the request's lists
	// (defaults 20, 100, 1000); MaxSourceTickets bounds the distinct source
	// tickets after the audit records are resolved (default 500).
	MaxAuditIDs, MaxTicketIDs, MaxPrincipals, MaxSourceTickets int
	// Concurrency bounds the engine calls of one check in flight (default 4).
	Concurrency int
	// PairChecks: when the principals of one type times the sources are at most
	// this, one BatchCheck of the pairs answers instead of listing the sources'
	// audiences (default 16; negative: never). The destination is listed first
	// and the sources' listings, started alongside, are cancelled when its
	// audience turns out small enough.
	PairChecks int
	// CacheEntries and CacheUsers bound the listings kept between checks for
	// the engine's current revision (defaults 1024 listings, 500,000 names;
	// negative CacheEntries: no cache). The cache is used only with an engine
	// that has revisions (authz.Revisioned) and evaluates clearance's own model
	// (authz.ClearanceModeled); see flowListings.
	CacheEntries, CacheUsers int
	// Model is the authorization model the engine evaluates (the engines'
	// Model method). When its ticket#can_view has the shape clearance's model
	// has, sources of one project share one listing (see ticketRule); nil (and
	// no ModelDSL): every source is listed whole.
	Model *openfgav1.AuthorizationModel
	// ModelDSL is Model in OpenFGA's DSL, for tests; Model wins.
	ModelDSL string
	// Deadline bounds one check (default 10s). Reaching it is an error (503).
	Deadline time.Duration
	// MaxNames bounds the principals an explained answer names (default 100).
	MaxNames int
	// Logger for debug lines (never ticket text). Nil discards.
	Logger *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Defaults of FlowConfig.
const (
	DefaultFlowMaxAuditIDs      = 20
	DefaultFlowMaxTicketIDs     = 100
	DefaultFlowMaxPrincipals    = 1000
	DefaultFlowMaxSourceTickets = 500
	DefaultFlowConcurrency      = 4
	DefaultFlowPairChecks       = 16
	DefaultFlowCacheEntries     = 1024
	DefaultFlowCacheUsers       = 500_000
	DefaultFlowDeadline         = 10 * time.Second
	DefaultFlowMaxNames         = 100
)

func (c *FlowConfig) defaults() {
	c.MaxAuditIDs = cmp.Or(c.MaxAuditIDs, DefaultFlowMaxAuditIDs)
	c.MaxTicketIDs = cmp.Or(c.MaxTicketIDs, DefaultFlowMaxTicketIDs)
	c.MaxPrincipals = cmp.Or(c.MaxPrincipals, DefaultFlowMaxPrincipals)
	c.MaxSourceTickets = cmp.Or(c.MaxSourceTickets, DefaultFlowMaxSourceTickets)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultFlowConcurrency)
	c.PairChecks = cmp.Or(c.PairChecks, DefaultFlowPairChecks)
	c.CacheEntries = cmp.Or(c.CacheEntries, DefaultFlowCacheEntries)
	c.CacheUsers = cmp.Or(c.CacheUsers, DefaultFlowCacheUsers)
	c.Deadline = cmp.Or(c.Deadline, DefaultFlowDeadline)
	c.MaxNames = cmp.Or(c.MaxNames, DefaultFlowMaxNames)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// FlowSources are what the caller was given: its own earlier answers (audit
// record ids: every ticket the record returned) and ticket ids it may view now.
type FlowSources struct {
	AuditIDs  []string
	TicketIDs []string
}

// FlowDestination is where derived content would go: exactly one of a project,
// a ticket, or an explicit list of principals ("user:<id>",
// "service_account:<id>").
type FlowDestination struct {
	Project    string
	Ticket     string
	Principals []string
}

// FlowRequest is one flow check.
type FlowRequest struct {
	Sources     FlowSources
	Destination FlowDestination
	// Explain asks for the excluded principals by name; only the tenant's admins
	// and operators may (Operator is set by the API for clearance:audit tokens).
	Explain  bool
	Operator bool
	// RequestID correlates the audit record with the HTTP request.
	RequestID string
}

// FlowExcluded is one principal who can view the destination but not every
// source (explained answers only).
type FlowExcluded struct {
	Principal string `json:"principal"`
	// CannotView counts the sources this principal cannot view; Tickets names
	// those of them the caller may view.
	CannotView int      `json:"cannot_view"`
	Tickets    []string `json:"tickets,omitempty"`
}

// FlowResponse is a flow check's answer.
type FlowResponse struct {
	Allowed bool     `json:"allowed"`
	Reasons []string `json:"reasons"`
	AuditID string   `json:"audit_id"`
	// Audience counts the principals who can view the destination; Excluded,
	// those of them who cannot view every source; Sources, the distinct source
	// tickets.
	Audience int `json:"audience"`
	Excluded int `json:"excluded"`
	Sources  int `json:"sources"`
	// Names is set only for explained answers.
	Names     []FlowExcluded `json:"excluded_principals,omitempty"`
	MoreNames int            `json:"more_excluded_principals,omitempty"`
}

// Flow answers "may content derived from these sources go to that
// destination?" for verified principals (SPEC 13, invariant 10). It is safe
// for concurrent use.
type Flow struct {
	cfg     FlowConfig
	eng     FlowEngine
	records FlowRecords
	log     audit.Log
	rule    *ticketRule
	// cache and revs: listings kept between checks (nil when off).
	cache *flowListings
	revs  authz.Revisioned
	// clearance: the engine evaluates clearance's own model, so service
	// accounts, and the users of a ticket's shares and blocks, are read from
	// direct tuples (flowsa.go); directs counts those listings.
	clearance bool
	directs   atomic.Int64
}

// NewFlow returns a flow checker over the engine, the audit records it cites and
// the log its decisions go to.
func NewFlow(cfg FlowConfig, eng FlowEngine, records FlowRecords, log audit.Log) *Flow {
	cfg.defaults()
	rule := ticketRuleOf(cfg.Model)
	if cfg.Model == nil {
		rule = parseTicketRule(cfg.ModelDSL)
	}
	f := &Flow{cfg: cfg, eng: eng, records: records, log: log, rule: rule}
	revs, revisioned := eng.(authz.Revisioned)
	modeled, ok := eng.(authz.ClearanceModeled)
	f.clearance = ok && modeled.ClearanceModel()
	if cfg.CacheEntries > 0 && cfg.CacheUsers > 0 && revisioned && f.clearance {
		changes, _ := eng.(authz.ChangeLister)
		f.cache, f.revs = newFlowListings(cfg.CacheEntries, cfg.CacheUsers, changes), revs
	}
	return f
}

// Check decides one flow for p. The rule, evaluated now: allowed only if every
// principal (user or service account) who can view the destination can view
// every source. A source that cannot be resolved (an unknown audit id, another
// principal's record, a ticket p may not view: all answered alike), an unknown
// destination, a wildcard audience or a listing cut short is a denial with its
// reason; an engine failure is an error wrapping clearance.ErrUnavailable.
// Invalid input is a *clearance.FieldError; asking for names without the right
// is clearance.ErrForbidden. Every decision is one audit record.
func (f *Flow) Check(ctx context.Context, p authz.Principal, req FlowRequest) (FlowResponse, error) {
	if err := checkPrincipal(p); err != nil {
		return FlowResponse{}, err
	}
	if err := f.validate(&req); err != nil {
		return FlowResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Deadline)
	defer cancel()
	rec := &audit.Record{
		Time: f.cfg.Now(), Kind: KindFlowCheck, Tenant: p.Tenant, Principal: p, RequestID: req.RequestID,
		ModelID: f.eng.ModelID(), Consistency: authz.HigherConsistency.String(), Latency: map[string]int64{},
		Plan: audit.Plan{Path: "flow"},
		Flow: &audit.FlowDecision{SourceAuditIDs: slices.Clone(req.Sources.AuditIDs), Recipients: len(req.Destination.Principals)},
	}
	start := time.Now()
	var resp FlowResponse
	err := f.explainAllowed(ctx, p, req)
	if err == nil {
		resp, err = f.decide(ctx, p, req, rec)
	}
	rec.Latency["total"] = since(start)
	if errors.Is(err, clearance.ErrForbidden) {
		return FlowResponse{}, err // refused before any decision: nothing to record
	}
	if err != nil {
		rec.Status = "error"
		rec.Error = err.Error()
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if aerr := f.log.Append(actx, rec); aerr != nil {
			f.cfg.Logger.Warn("flow: audit record of a failed check not written", "error", aerr)
		}
		return FlowResponse{}, err
	}
	rec.Status = "denied"
	if resp.Allowed {
		rec.Status = "allowed"
	}
	rec.Flow.Allowed, rec.Flow.Audience, rec.Flow.Excluded = resp.Allowed, resp.Audience, resp.Excluded
	rec.Flow.SourceTickets, rec.Flow.Explained = resp.Sources, req.Explain
	rec.Plan.Notes = append(rec.Plan.Notes, resp.Reasons...)
	if aerr := f.log.Append(ctx, rec); aerr != nil {
		return FlowResponse{}, unavailable("append audit record", aerr)
	}
	resp.AuditID = rec.ID
	f.cfg.Logger.Debug("flow: decision", "audit_id", rec.ID, "principal", p.String(), "allowed", resp.Allowed,
		"audience", resp.Audience, "excluded", resp.Excluded, "sources", resp.Sources, "total_us", rec.Latency["total"])
	return resp, nil
}

// validate checks the request's shape and limits (nothing about who may see
// what: that is a decision, recorded).
func (f *Flow) validate(req *FlowRequest) error {
	s, d := req.Sources, req.Destination
	switch {
	case len(s.AuditIDs) == 0 && len(s.TicketIDs) == 0:
		return clearance.Invalid("sources", "name at least one audit_id or ticket_id")
	case len(s.AuditIDs) > f.cfg.MaxAuditIDs:
		return clearance.Invalid("sources.audit_ids", "names more than %d records", f.cfg.MaxAuditIDs)
	case len(s.TicketIDs) > f.cfg.MaxTicketIDs:
		return clearance.Invalid("sources.ticket_ids", "names more than %d tickets", f.cfg.MaxTicketIDs)
	case len(d.Principals) > f.cfg.MaxPrincipals:
		return clearance.Invalid("destination.principals", "names more than %d principals", f.cfg.MaxPrincipals)
	}
	// Ids that cannot be ids are bad input (their syntax is public); well-formed
	// ones that name nothing the caller may use are decided as unknown.
	for i, id := range s.AuditIDs {
		if !audit.ValidID(id) {
			return clearance.Invalid(fmt.Sprintf("sources.audit_ids[%d]", i), "is not an audit record id")
		}
	}
	for i, id := range s.TicketIDs {
		if !indexer.ValidID(id) {
			return clearance.Invalid(fmt.Sprintf("sources.ticket_ids[%d]", i), "is not a valid ticket id")
		}
	}
	n := 0
	for _, set := range []bool{d.Project != "", d.Ticket != "", d.Principals != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return clearance.Invalid("destination", "give exactly one of project, ticket or principals")
	}
	switch {
	case d.Project != "" && !indexer.ValidID(d.Project):
		return clearance.Invalid("destination.project", "is not a valid project id")
	case d.Ticket != "" && !indexer.ValidID(d.Ticket):
		return clearance.Invalid("destination.ticket", "is not a valid ticket id")
	case d.Principals != nil && len(d.Principals) == 0:
		return clearance.Invalid("destination.principals", "name at least one principal")
	}
	for i, pr := range d.Principals {
		typ, id, _ := strings.Cut(pr, ":")
		ok := (typ == "user" && validSubject(id)) || (typ == "service_account" && indexer.ValidID(id))
		if !ok {
			return clearance.Invalid(fmt.Sprintf("destination.principals[%d]", i), `want "user:<id>" or "service_account:<id>"`)
		}
	}
	return nil
}

// validSubject accepts what a token's sub may be as an engine user id
// (identity providers use '|', '@' and ':'), as api/auth does: nothing that
// would break a tuple or a delegation id.
func validSubject(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '#' || r == '~' {
			return false
		}
	}
	return true
}

// explainAllowed refuses Explain unless p is an operator or an admin of its
// tenant (asked fresh).
func (f *Flow) explainAllowed(ctx context.Context, p authz.Principal, req FlowRequest) error {
	if !req.Explain || (req.Operator && p.Kind == authz.KindUser) {
		return nil
	}
	refused := fmt.Errorf("explain=true is for the tenant's admins and operators: %w", clearance.ErrForbidden)
	if p.Kind != authz.KindUser {
		return refused
	}
	ok, err := f.eng.BatchCheck(ctx, authz.Query{Consistency: authz.HigherConsistency, Now: f.cfg.Now()},
		[]authz.Check{{User: "user:" + p.User, Relation: "admin", Object: "tenant:" + p.Tenant}})
	if err != nil {
		return unavailable("explain: is the caller a tenant admin", err)
	}
	if len(ok) != 1 || !ok[0] {
		return refused
	}
	return nil
}

// source is one distinct source ticket.
type source struct {
	id, project string
	// viewable: the caller may view it now (then it may be named).
	viewable bool
	// plan: how its audience is assembled (the model's rule), read once.
	plan    sourcePlan
	planned bool
}

// decide resolves sources and destination and applies the rule.
func (f *Flow) decide(ctx context.Context, p authz.Principal, req FlowRequest, rec *audit.Record) (FlowResponse, error) {
	var unknown []string
	// 1. The caller's own records: every ticket they returned.
	var sources []*source
	byID := map[string]*source{}
	add := func(id, project string) {
		if s, ok := byID[id]; ok {
			s.project = cmp.Or(s.project, project)
			return
		}
		s := &source{id: id, project: project}
		byID[id] = s
		sources = append(sources, s)
	}
	t := time.Now()
	for _, id := range dedupe(req.Sources.AuditIDs) {
		r, err := f.ownRecord(ctx, p, id)
		if err != nil {
			return FlowResponse{}, err
		}
		if r == nil {
			unknown = append(unknown, fmt.Sprintf("source audit record %q is unknown", id))
			continue
		}
		for _, c := range r.Results {
			if c.Decision == audit.Returned {
				add(c.TicketID, c.Project)
			}
		}
	}
	rec.Latency["records"] = since(t)
	cited := map[string]bool{}
	for _, id := range dedupe(req.Sources.TicketIDs) {
		cited[id] = true
		add(id, "")
	}
	if len(sources) > f.cfg.MaxSourceTickets {
		return FlowResponse{}, clearance.Invalid("sources", "resolve to %d tickets; the limit is %d", len(sources), f.cfg.MaxSourceTickets)
	}
	for _, s := range sources {
		rec.Results = append(rec.Results, audit.Candidate{TicketID: s.id, Project: s.project, Decision: audit.FlowSource})
	}

	// 2. One BatchCheck: may the caller view each cited ticket (it must), and
	// is the destination known to the caller? Tickets of the caller's own
	// records are sources whatever the caller may view now; whether they may
	// be named is asked later, for a denial's reasons only.
	d := req.Destination
	var checks viewChecks
	var checked []*source
	for _, s := range sources {
		if cited[s.id] {
			checks.add(p.ViewChecks("ticket:" + s.id)...)
			checked = append(checked, s)
		}
	}
	var dest string
	switch {
	case d.Project != "":
		dest = "project:" + d.Project
		rec.Flow.Destination = dest
		// A project of the caller's tenant; its audience may be told in counts.
		checks.add(authz.Check{User: "tenant:" + p.Tenant, Relation: "tenant", Object: dest})
	case d.Ticket != "":
		dest = "ticket:" + d.Ticket
		rec.Flow.Destination = "ticket"
		rec.Results = append(rec.Results, audit.Candidate{TicketID: d.Ticket, Decision: audit.FlowDestination})
		checks.add(p.ViewChecks(dest)...)
	default:
		rec.Flow.Destination = "principals"
	}
	t = time.Now()
	q, exists, err := f.parity(ctx, p, checked, d.Ticket)
	if err != nil {
		return FlowResponse{}, err
	}
	answers, err := f.callerChecksQ(ctx, q, checks.all)
	rec.Latency["check"] = since(t)
	rec.Plan.Checked += len(checks.all)
	if err != nil {
		return FlowResponse{}, err
	}
	ok := checks.allowed(answers)
	if d.Ticket != "" {
		ok[len(ok)-1] = ok[len(ok)-1] && exists[d.Ticket]
	}
	for i, s := range checked {
		s.viewable = ok[i] && exists[s.id]
		if !s.viewable {
			unknown = append(unknown, fmt.Sprintf("source ticket %q is unknown", s.id))
		}
	}
	if dest != "" && !ok[len(ok)-1] {
		what := "project"
		if d.Ticket != "" {
			what = "ticket"
		}
		unknown = append(unknown, fmt.Sprintf("destination %s %q is unknown", what, cmp.Or(d.Project, d.Ticket)))
	}
	resp := FlowResponse{Sources: len(sources), Reasons: []string{}}
	if len(unknown) > 0 {
		resp.Reasons = append(unknown, "nothing may be written until every source and the destination are known")
		return resp, nil
	}

	memo := &listMemo{m: map[memoKey]*memoEntry{}}
	if f.cache != nil {
		// Read before the first listing: entries kept under it are at least
		// this new (flowListings).
		rev, err := f.revs.Revision(ctx)
		if err != nil || rev.Key == "" {
			f.cfg.Logger.Debug("flow: engine revision unknown: listings asked afresh, none kept", "error", err)
			rec.Plan.Notes = append(rec.Plan.Notes, "engine revision unknown: every listing asked afresh, none kept")
		} else {
			memo.cache, memo.rev = f.cache, rev
			rec.Plan.Revision = rev.String()
		}
	}
	ctx = context.WithValue(ctx, memoCtxKey{}, memo)
	// 3. The destination's audience decides how the sources are asked. The
	// sources' user audiences (users are most of any listed audience) are
	// listed alongside it, and cancelled when it turns out public, empty, cut
	// short, or small enough for one BatchCheck of the pairs (missing).
	t = time.Now()
	var (
		members           []string
		userLists         [][]string
		truncated, cut    string
		srcErr            error
		srcCtx, cancelSrc = context.WithCancel(ctx)
		srcDone           = make(chan struct{})
	)
	defer cancelSrc()
	if dest != "" && len(sources) > 0 {
		go func() {
			defer close(srcDone)
			userLists, cut, srcErr = f.sourceAudiences(srcCtx, sources, []string{"user"})
		}()
	} else {
		close(srcDone)
	}
	members, truncated, err = f.audience(ctx, dest, d.Principals)
	users := 0
	for _, u := range members {
		if strings.HasPrefix(u, "user:") {
			users++
		}
	}
	listSources := err == nil && truncated == "" && !slices.ContainsFunc(members, isWildcard) &&
		users > 0 && (f.cfg.PairChecks < 0 || users*len(sources) > f.cfg.PairChecks)
	if !listSources {
		cancelSrc()
	}
	<-srcDone
	if !listSources {
		userLists, cut, srcErr = nil, "", nil
	}
	rec.Latency["audience"] = since(t)
	if err == nil {
		err = srcErr
	}
	if err != nil {
		return FlowResponse{}, err
	}
	if n := memo.calls.Load() + memo.hits.Load(); memo.cache != nil && n > 0 {
		defer func() {
			rec.Plan.Notes = append(rec.Plan.Notes, fmt.Sprintf("listings: %d of %d kept from earlier checks at this revision",
				memo.hits.Load(), memo.calls.Load()+memo.hits.Load()))
		}()
	}
	if truncated == "" {
		truncated = cut
	}
	destName := destinationName(d)
	switch {
	case truncated != "":
		rec.Plan.Truncated = true
		resp.Reasons = append(resp.Reasons, fmt.Sprintf("who can view %s or a source could not be listed completely (%s); denied to be safe", destName, truncated))
		return resp, nil
	case slices.ContainsFunc(members, func(u string) bool { return strings.HasSuffix(u, ":*") }):
		resp.Reasons = append(resp.Reasons, fmt.Sprintf("%s is public to every principal of a type; no source may go there", destName))
		return resp, nil
	}
	resp.Audience = len(members)
	if len(sources) == 0 {
		resp.Allowed = true
		resp.Reasons = append(resp.Reasons, "the cited records returned no tickets: nothing to protect")
		return resp, nil
	}
	if len(members) == 0 {
		resp.Allowed = true
		resp.Reasons = append(resp.Reasons, fmt.Sprintf("nobody can view %s", destName))
		return resp, nil
	}

	// 4. Which audience member cannot view which source.
	t = time.Now()
	missing, lists, listed, cut, err := f.missing(ctx, members, sources, userLists)
	rec.Latency["sources"] = since(t)
	if err != nil {
		return FlowResponse{}, err
	}
	if users > 0 {
		how := "one BatchCheck of the pairs"
		if listed["user"] {
			how = "their audiences listed"
		}
		rec.Plan.Notes = append(rec.Plan.Notes, fmt.Sprintf("sources against %d users of the audience: %s", users, how))
	}
	if cut != "" {
		rec.Plan.Truncated = true
		resp.Reasons = append(resp.Reasons, fmt.Sprintf("who can view a source could not be listed completely (%s); denied to be safe", cut))
		return resp, nil
	}
	bad := map[string]bool{}
	for _, ss := range missing {
		for _, s := range ss {
			bad[s.id] = true
		}
	}
	resp.Excluded = len(missing)
	rec.Plan.Denied = len(bad)
	if len(missing) == 0 {
		resp.Allowed = true
		resp.Reasons = append(resp.Reasons, fmt.Sprintf("all %d %s who can view %s can view all %d %s",
			len(members), plural(len(members), "principal", "principals"), destName, len(sources), plural(len(sources), "source", "sources")))
		return resp, nil
	}
	resp.Reasons = append(resp.Reasons, fmt.Sprintf("%d of the %d %s who can view %s cannot view %d of the %d %s",
		len(missing), len(members), plural(len(members), "principal", "principals"), destName, len(bad), len(sources), plural(len(sources), "source", "sources")))
	// Name only the sources the caller may view now: ask for those of its
	// records (cited tickets were asked already).
	var ask viewChecks
	var asked []*source
	subjType, _, _ := strings.Cut(p.Subject(), ":")
	for i, s := range sources {
		if !bad[s.id] || cited[s.id] {
			continue
		}
		if _, bounded := p.Minter(); listed[subjType] && p.Kind != authz.KindAgent && !bounded {
			// The source's audience was listed: the caller is in it or not.
			_, s.viewable = slices.BinarySearch(lists[i], p.Subject())
			continue
		}
		ask.add(p.ViewChecks("ticket:" + s.id)...)
		asked = append(asked, s)
	}
	if len(ask.all) > 0 {
		answers, err := f.callerChecks(ctx, p, ask.all)
		if err != nil {
			return FlowResponse{}, err
		}
		ok := ask.allowed(answers)
		for i, s := range asked {
			s.viewable = ok[i]
		}
		rec.Plan.Checked += len(ask.all)
	}
	var named []string
	hidden := 0
	for _, s := range sources {
		if !bad[s.id] {
			continue
		}
		if s.viewable {
			named = append(named, s.id)
		} else {
			hidden++
		}
	}
	if len(named) > 0 {
		r := "sources not everyone there may view: " + strings.Join(named, ", ")
		if hidden > 0 {
			r += fmt.Sprintf(" (and %d you may no longer view)", hidden)
		}
		resp.Reasons = append(resp.Reasons, r)
	} else if hidden > 0 {
		resp.Reasons = append(resp.Reasons, fmt.Sprintf("%d of those sources you may no longer view", hidden))
	}
	resp.Reasons = append(resp.Reasons, "write to a place whose audience can view every source, or leave those sources out")
	if req.Explain {
		names := make([]string, 0, len(missing))
		for u := range missing {
			names = append(names, u)
		}
		slices.Sort(names)
		for i, u := range names {
			if i == f.cfg.MaxNames {
				resp.MoreNames = len(names) - i
				break
			}
			ex := FlowExcluded{Principal: u, CannotView: len(missing[u])}
			for _, s := range missing[u] {
				if s.viewable {
					ex.Tickets = append(ex.Tickets, s.id)
				}
			}
			resp.Names = append(resp.Names, ex)
		}
	}
	return resp, nil
}

// parity reads the stored tuples of the cited tickets (and of a destination
// ticket) and answers the query for the caller's checks: a ticket without a
// project in the engine (missing, deleted) is checked against the decoy project
// of the caller's tenant, as ticket reads are (get.go), so a missing id costs
// the engine what an existing invisible one does, and the answer does not tell
// them apart by its latency either. exists says which ids have a project; the
// caller's answer counts only for those. The reads also give the sources' plans
// (the model's rule), so they are not read twice.
func (f *Flow) parity(ctx context.Context, p authz.Principal, cited []*source, destTicket string) (authz.Query, map[string]bool, error) {
	q := authz.Query{ContextualTuples: p.ContextualTuples(), Now: f.cfg.Now(), Consistency: authz.HigherConsistency}
	ids := make([]string, 0, len(cited)+1)
	for _, s := range cited {
		ids = append(ids, s.id)
	}
	if destTicket != "" {
		ids = append(ids, destTicket)
	}
	found := make([]bool, len(ids))
	err := f.parallel(ctx, len(ids), func(ctx context.Context, i int) error {
		var plan sourcePlan
		for t, err := range f.eng.Read(ctx, authz.TupleFilter{Object: "ticket:" + ids[i]}) {
			if err != nil {
				return unavailable("read cited tickets", err)
			}
			if t.Relation == "project" {
				found[i] = true
			}
			if f.rule != nil {
				f.rule.note(&plan, t)
			}
		}
		if i < len(cited) && f.rule != nil {
			cited[i].plan, cited[i].planned = plan, true
		}
		return nil
	})
	if err != nil {
		return q, nil, err
	}
	exists := make(map[string]bool, len(ids))
	decoys := 0
	for i, id := range ids {
		exists[id] = exists[id] || found[i]
	}
	for id, ok := range exists {
		if !ok {
			q.ContextualTuples = append(q.ContextualTuples, authz.Tuple{User: decoyProject, Relation: "project", Object: "ticket:" + id})
			decoys++
		}
	}
	if decoys > 0 {
		q.ContextualTuples = append(q.ContextualTuples, authz.Tuple{User: "tenant:" + p.Tenant, Relation: "tenant", Object: decoyProject})
	}
	return q, exists, nil
}

// callerChecks asks the engine about the caller (its contextual tuples,
// HIGHER_CONSISTENCY); an empty list costs nothing.
func (f *Flow) callerChecks(ctx context.Context, p authz.Principal, checks []authz.Check) ([]bool, error) {
	return f.callerChecksQ(ctx, authz.Query{ContextualTuples: p.ContextualTuples(), Now: f.cfg.Now(), Consistency: authz.HigherConsistency}, checks)
}

// callerChecksQ is callerChecks with the query given.
func (f *Flow) callerChecksQ(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error) {
	if len(checks) == 0 {
		return nil, nil
	}
	ok, err := f.eng.BatchCheck(ctx, q, checks)
	if err != nil {
		return nil, unavailable("check what the caller may view", err)
	}
	if len(ok) != len(checks) {
		return nil, unavailable("check what the caller may view", fmt.Errorf("engine answered %d results for %d checks", len(ok), len(checks)))
	}
	return ok, nil
}

// ownRecord returns the caller's own record id, or nil when the id is not a
// record, not the caller's (exactly the same principal: a user, that user's
// agent and a service account are three different callers), or of another
// tenant: all alike.
func (f *Flow) ownRecord(ctx context.Context, p authz.Principal, id string) (*audit.Record, error) {
	r, err := f.records.Get(ctx, id)
	if errors.Is(err, clearance.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("read cited audit record", err)
	}
	q := r.Principal
	if r.Tenant != p.Tenant || q.Tenant != p.Tenant || q.Kind != p.Kind || q.User != p.User || q.Agent != p.Agent || q.ServiceAccount != p.ServiceAccount {
		return nil, nil
	}
	return r, nil
}

// audience lists who can view dest (users and service accounts), or takes the
// explicit principals. truncated is set (and the list nil) when a listing was
// cut short.
func (f *Flow) audience(ctx context.Context, dest string, principals []string) ([]string, string, error) {
	if dest == "" {
		return dedupe(principals), "", nil
	}
	lists, cut, err := f.listAll(ctx, []usersOf{{dest, authz.RelationCanView}}, []string{"user", "service_account"})
	if err != nil || cut != "" {
		return nil, cut, err
	}
	return lists[0], "", nil
}

// usersOf is one ListUsers question: who has relation on object.
type usersOf struct{ object, relation string }

// listAll asks every listing for every user type, concurrently (bounded).
// Result i is jobs[i]'s sorted users of all types. cut is set (and the result
// nil) when a listing was cut short.
func (f *Flow) listAll(ctx context.Context, jobs []usersOf, types []string) ([][]string, string, error) {
	q := authz.Query{Now: f.cfg.Now(), Consistency: authz.HigherConsistency}
	out := make([][]string, len(jobs))
	type task struct{ job, typ int }
	var tasks []task
	for i := range jobs {
		for t := range types {
			tasks = append(tasks, task{i, t})
		}
	}
	var mu sync.Mutex
	cut := ""
	err := f.parallel(ctx, len(tasks), func(ctx context.Context, k int) error {
		j := jobs[tasks[k].job]
		users, err := f.listUsers(ctx, q, j.object, j.relation, types[tasks[k].typ])
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, authz.ErrTruncated):
			if cut == "" {
				cut = err.Error()
			}
			return errCut
		case err != nil:
			return unavailable("list users", err)
		}
		out[tasks[k].job] = append(out[tasks[k].job], users...)
		return nil
	})
	if cut != "" {
		return nil, cut, nil
	}
	if err != nil {
		return nil, "", err
	}
	for i := range out {
		slices.Sort(out[i])
		out[i] = slices.Compact(out[i])
	}
	return out, "", nil
}

// listMemo shares the listings of one flow check: the destination project is
// often a source's project too, and its listing runs once. Request-scoped (a
// context value set by decide), never shared between checks.
type listMemo struct {
	mu sync.Mutex
	m  map[memoKey]*memoEntry
	// cache, when set, keeps listings between checks at revision rev.
	cache       *flowListings
	rev         authz.Revision
	calls, hits atomic.Int64
}

type memoKey struct{ object, relation, typ string }

type memoEntry struct {
	done  chan struct{}
	users []string
	err   error
}

type memoCtxKey struct{}

// listUsers is the engine's ListUsers through the request's memo (and the
// listings kept between checks). Answers are shared: callers must not modify
// them.
func (f *Flow) listUsers(ctx context.Context, q authz.Query, object, relation, typ string) ([]string, error) {
	m, _ := ctx.Value(memoCtxKey{}).(*listMemo)
	if m == nil {
		return f.engineList(ctx, q, memoKey{object, relation, typ})
	}
	k := memoKey{object, relation, typ}
	for {
		m.mu.Lock()
		e, ok := m.m[k]
		if !ok {
			e = &memoEntry{done: make(chan struct{})}
			m.m[k] = e
			m.mu.Unlock()
			e.users, e.err = f.fetch(ctx, m, q, k)
			if e.err != nil {
				// Nobody reuses a failed listing: it may have failed only
				// because its context was cancelled (the sources' listings
				// are, when pairs answer instead).
				m.mu.Lock()
				delete(m.m, k)
				m.mu.Unlock()
			}
			close(e.done)
			return e.users, e.err
		}
		m.mu.Unlock()
		select {
		case <-e.done:
			if e.err != nil && ctx.Err() == nil {
				continue // its owner failed, perhaps cancelled: ask under this context
			}
			return e.users, e.err
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: list %s users of %s#%s: %w", authz.ErrTruncated, typ, object, relation, ctx.Err())
		}
	}
}

// fetch answers one listing from the kept listings or the engine, and keeps
// a complete answer.
func (f *Flow) fetch(ctx context.Context, m *listMemo, q authz.Query, k memoKey) ([]string, error) {
	if m.cache != nil {
		if users, ok := m.cache.get(m.rev, k); ok {
			m.hits.Add(1)
			return users, nil
		}
	}
	m.calls.Add(1)
	users, err := f.engineList(ctx, q, k)
	if err == nil && m.cache != nil {
		m.cache.put(m.rev, k, users)
	}
	return users, err
}

// engineList answers one listing from the engine: its ListUsers, or, under
// clearance's own model, from direct tuples where the model admits it
// (directSA, directUsers).
func (f *Flow) engineList(ctx context.Context, q authz.Query, k memoKey) ([]string, error) {
	if f.clearance {
		var users []string
		var ok bool
		var err error
		switch k.typ {
		case "service_account":
			users, ok, err = f.directSA(ctx, q, k.object, k.relation)
		case "user":
			users, ok, err = f.directUsers(ctx, q, k.object, k.relation)
		}
		if err != nil || ok {
			if ok {
				f.directs.Add(1)
			}
			return users, err
		}
	}
	return f.eng.ListUsers(ctx, q, k.object, k.relation, k.typ)
}

// errCut stops the other listings of a request once one was cut short.
var errCut = errors.New("listing cut short")

// parallel runs do(0..n-1) with at most Concurrency in flight; the first error
// cancels the rest and is returned.
func (f *Flow) parallel(ctx context.Context, n int, do func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, f.cfg.Concurrency)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := do(ctx, i); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		// The caller's context ended before every task started.
		firstErr = unavailable("flow check", ctx.Err())
	}
	return firstErr
}

// missing answers, for every audience member who cannot view some source,
// those sources. Per principal type: when few pairs, one BatchCheck of every
// (principal, source); otherwise each source's audience of that type.
//
// It also answers the sources' listed audiences (lists[i], sorted) and which
// principal types they hold (listed).
func (f *Flow) missing(ctx context.Context, audience []string, sources []*source, userLists [][]string) (out map[string][]*source, lists [][]string, listed map[string]bool, cut string, err error) {
	byType := map[string][]string{}
	for _, u := range audience {
		typ, _, _ := strings.Cut(u, ":")
		byType[typ] = append(byType[typ], u)
	}
	var paired, listTypes []string
	known := map[string][][]string{}
	if userLists != nil {
		known["user"] = userLists // listed while the audience was
	}
	for typ, members := range byType {
		if known[typ] != nil {
			listTypes = append(listTypes, typ)
			continue
		}
		// Under clearance's model a source's service accounts are read from
		// direct tuples (flowsa.go), cheaper than any BatchCheck of pairs.
		if len(members)*len(sources) <= f.cfg.PairChecks && !(f.clearance && typ == "service_account") {
			paired = append(paired, members...)
		} else {
			listTypes = append(listTypes, typ)
		}
	}
	slices.Sort(listTypes)
	out = map[string][]*source{}
	if len(paired) > 0 {
		checks := make([]authz.Check, 0, len(paired)*len(sources))
		for _, u := range paired {
			for _, s := range sources {
				checks = append(checks, authz.Check{User: u, Relation: authz.RelationCanView, Object: "ticket:" + s.id})
			}
		}
		ok, err := f.eng.BatchCheck(ctx, authz.Query{Now: f.cfg.Now(), Consistency: authz.HigherConsistency}, checks)
		if err != nil {
			return nil, nil, nil, "", unavailable("check audience", err)
		}
		if len(ok) != len(checks) {
			return nil, nil, nil, "", unavailable("check audience", fmt.Errorf("engine answered %d results for %d checks", len(ok), len(checks)))
		}
		for i, c := range checks {
			if !ok[i] {
				out[c.User] = append(out[c.User], sources[i%len(sources)])
			}
		}
	}
	if len(listTypes) == 0 {
		return out, nil, nil, "", nil
	}
	listed = map[string]bool{}
	for _, typ := range listTypes {
		listed[typ] = true
	}
	lists = make([][]string, len(sources))
	var ask []string
	for _, typ := range listTypes {
		if known[typ] == nil {
			ask = append(ask, typ)
		}
	}
	if len(ask) > 0 {
		more, cut, err := f.sourceAudiences(ctx, sources, ask)
		if err != nil || cut != "" {
			return nil, nil, nil, cut, err
		}
		copy(lists, more)
	}
	for i := range sources {
		for _, k := range known {
			lists[i] = append(lists[i], k[i]...)
		}
		slices.Sort(lists[i])
	}
	for i, s := range sources {
		for _, typ := range listTypes {
			if _, public := slices.BinarySearch(lists[i], typ+":*"); public {
				continue
			}
			for _, u := range byType[typ] {
				if _, found := slices.BinarySearch(lists[i], u); !found {
					out[u] = append(out[u], s)
				}
			}
		}
	}
	return out, lists, listed, "", nil
}

func destinationName(d FlowDestination) string {
	switch {
	case d.Project != "":
		return "project " + d.Project
	case d.Ticket != "":
		return "ticket " + d.Ticket
	}
	return "the given principals"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// dedupe keeps the first of each value, in order.
func dedupe(s []string) []string {
	seen := make(map[string]bool, len(s))
	out := make([]string, 0, len(s))
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// viewChecks lays out the checks of several questions, each of which may take
// more than one check (a key bounded by its minter needs both to allow).
type viewChecks struct {
	all   []authz.Check
	sizes []int
}

// add appends one question answered by all of cs.
func (v *viewChecks) add(cs ...authz.Check) {
	v.all = append(v.all, cs...)
	v.sizes = append(v.sizes, len(cs))
}

// allowed folds the engine's answers to v.all into one answer per question:
// true only when every one of its checks allowed.
func (v *viewChecks) allowed(answers []bool) []bool {
	out := make([]bool, len(v.sizes))
	i := 0
	for q, n := range v.sizes {
		out[q] = !slices.Contains(answers[i:i+n], false)
		i += n
	}
	return out
}
