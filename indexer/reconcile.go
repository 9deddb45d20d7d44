package indexer

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// TupleReader is the part of authz.Engine that reconciliation needs.
type TupleReader interface {
	Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error]
}

// ReconcileConfig configures Reconcile.
type ReconcileConfig struct {
	Store  retrieval.Store
	Engine TupleReader
	// Fix rewrites the index metadata from the engine: Store.Move for another
	// project of the same tenant, a re-embedded upsert for another tenant.
	Fix bool
	// Embedder and Chunker re-embed a ticket whose tenant changes (its
	// vectors move to another tenant's partition with new chunks); without an
	// Embedder such drift is reported but not fixed.
	Embedder retrieval.Embedder
	Chunker  Chunker
	Logger   *slog.Logger
}

// DriftKind says how an indexed ticket disagrees with the engine.
type DriftKind string

// Kinds of drift.
const (
	// DriftNoTicketTuple: the engine has no ticket#project tuple; nobody but
	// direct viewers can see the ticket. Not fixable from the engine.
	DriftNoTicketTuple DriftKind = "missing_ticket_project"
	// DriftManyProjects: several ticket#project tuples; not fixable.
	DriftManyProjects DriftKind = "several_projects"
	// DriftProject: the tuple names another project (of the indexed tenant).
	DriftProject DriftKind = "other_project"
	// DriftNoProjectTenant: the project has no (or several) project#tenant
	// tuples, so its tenant is unknown; not fixable.
	DriftNoProjectTenant DriftKind = "missing_project_tenant"
	// DriftTenant: the project belongs to another tenant than the index says.
	DriftTenant DriftKind = "other_tenant"
	// DriftLexical: the store's lexical index does not hold every chunk of the
	// ticket (stores with one, retrieval.LexicalSearcher); fixed by
	// re-embedding and re-writing the ticket, which rebuilds both arms.
	DriftLexical DriftKind = "lexical_arm"
)

// Drift is one indexed ticket whose metadata disagrees with the engine.
type Drift struct {
	TicketID      string    `json:"ticket_id"`
	Kind          DriftKind `json:"kind"`
	IndexTenant   string    `json:"index_tenant"`
	IndexProject  string    `json:"index_project"`
	EngineTenant  string    `json:"engine_tenant,omitempty"`
	EngineProject string    `json:"engine_project,omitempty"`
	Fixed         bool      `json:"fixed"`
	// NotFixed says why a fix was not applied.
	NotFixed string `json:"not_fixed,omitempty"`

	chunks int // indexed chunk count, to notice a store that keeps no bodies
}

func (d Drift) String() string {
	s := fmt.Sprintf("ticket %s: %s (index %s/%s", d.TicketID, d.Kind, d.IndexTenant, d.IndexProject)
	if d.EngineProject != "" || d.EngineTenant != "" {
		s += fmt.Sprintf(", engine %s/%s", d.EngineTenant, d.EngineProject)
	}
	s += ")"
	switch {
	case d.Fixed:
		s += ": fixed"
	case d.NotFixed != "":
		s += ": not fixed, " + d.NotFixed
	}
	return s
}

// Report is the outcome of Reconcile.
type Report struct {
	Tickets int     `json:"tickets"`
	Drift   []Drift `json:"drift"`
	Fixed   int     `json:"fixed"`
}

// Reconcile compares every indexed ticket's tenant and project with the
// engine's ticket#project tuple and that project's project#tenant tuple, and
// with Fix rewrites the index from the engine. Drift is safe meanwhile (the
// post-filter checks every result against the engine) but hurts recall: a
// ticket indexed under the wrong project is missed by the pre-filter.
func Reconcile(ctx context.Context, cfg ReconcileConfig) (Report, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var rep Report
	var refs []retrieval.TicketRef
	for ref, err := range cfg.Store.Tickets(ctx) {
		if err != nil {
			return rep, fmt.Errorf("list indexed tickets: %w", err)
		}
		refs = append(refs, ref)
	}
	// OpenFGA lists a type's objects only for a given user: list each indexed
	// tenant's projects, then each project's tickets, then ticket by ticket
	// those not found that way (drifted or missing). Reads: tenants + projects
	// + drifted tickets.
	projectTenants := map[string][]string{}
	scan := map[string]bool{}
	tenants := map[string]bool{}
	for _, ref := range refs {
		scan[ref.Project] = true
		tenants[ref.Tenant] = true
	}
	for tenant := range tenants {
		err := readUsers(ctx, cfg.Engine, authz.TupleFilter{Object: "project:", Relation: "tenant", User: "tenant:" + tenant}, "tenant", func(project, tenant string) {
			projectTenants[project] = append(projectTenants[project], tenant)
			scan[project] = true
		})
		if err != nil {
			return rep, err
		}
	}
	ticketProjects := map[string][]string{}
	addProject := func(ticket, project string) { ticketProjects[ticket] = append(ticketProjects[ticket], project) }
	for p := range scan {
		if err := readUsers(ctx, cfg.Engine, authz.TupleFilter{Object: "ticket:", Relation: "project", User: "project:" + p}, "project", addProject); err != nil {
			return rep, err
		}
	}
	for _, ref := range refs {
		if len(ticketProjects[ref.ID]) == 0 {
			if err := readUsers(ctx, cfg.Engine, authz.TupleFilter{Object: "ticket:" + ref.ID, Relation: "project"}, "project", addProject); err != nil {
				return rep, err
			}
		}
	}
	// Tenants of the projects not listed above (no tenant tuple, or another
	// tenant than any indexed one).
	for _, ps := range ticketProjects {
		for _, p := range ps {
			if _, ok := projectTenants[p]; ok {
				continue
			}
			projectTenants[p] = nil
			err := readUsers(ctx, cfg.Engine, authz.TupleFilter{Object: "project:" + p, Relation: "tenant"}, "tenant", func(_, tenant string) {
				projectTenants[p] = append(projectTenants[p], tenant)
			})
			if err != nil {
				return rep, err
			}
		}
	}
	slices.SortFunc(refs, func(a, b retrieval.TicketRef) int { return strings.Compare(a.ID, b.ID) })
	rep.Tickets = len(refs)
	lex, _ := cfg.Store.(retrieval.LexicalSearcher)
	// A Qdrant index created before the lexical arm has none to compare
	// (its searches answer ErrUnsupported); its vectors are still reconciled.
	if h, ok := cfg.Store.(interface{ HasLexicalIndex() bool }); ok && !h.HasLexicalIndex() {
		lex = nil
	}
	for _, ref := range refs {
		d, ok := compare(ref, ticketProjects[ref.ID], projectTenants)
		if !ok && lex != nil {
			var err error
			if d, ok, err = compareLexical(ctx, lex, ref); err != nil {
				return rep, err
			}
		}
		if !ok {
			continue
		}
		if cfg.Fix {
			if err := fix(ctx, cfg, &d); err != nil {
				return rep, err
			}
			if d.Fixed {
				rep.Fixed++
			}
		}
		log.Warn("index drift", "ticket", d.TicketID, "kind", d.Kind, "index_project", d.IndexProject,
			"engine_project", d.EngineProject, "index_tenant", d.IndexTenant, "engine_tenant", d.EngineTenant, "fixed", d.Fixed)
		rep.Drift = append(rep.Drift, d)
	}
	return rep, nil
}

// compare finds the drift of one ticket, if any.
func compare(ref retrieval.TicketRef, projects []string, projectTenants map[string][]string) (Drift, bool) {
	d := Drift{TicketID: ref.ID, IndexTenant: ref.Tenant, IndexProject: ref.Project, chunks: ref.Chunks}
	project := ref.Project
	switch len(projects) {
	case 0:
		d.Kind = DriftNoTicketTuple
	case 1:
		project = projects[0]
		d.EngineProject = project
	default:
		d.Kind = DriftManyProjects
		d.EngineProject = strings.Join(projects, ",")
	}
	tenants := projectTenants[project]
	if len(tenants) == 1 {
		d.EngineTenant = tenants[0]
	}
	if d.Kind != "" {
		return d, true
	}
	switch {
	case len(tenants) != 1:
		d.Kind = DriftNoProjectTenant
	case d.EngineTenant != ref.Tenant:
		d.Kind = DriftTenant
	case project != ref.Project:
		d.Kind = DriftProject
	default:
		return d, false
	}
	return d, true
}

// compareLexical checks that the lexical arm holds every chunk of the ticket,
// under its own tenant: the ticket's id is a term of each of its chunks.
func compareLexical(ctx context.Context, lex retrieval.LexicalSearcher, ref retrieval.TicketRef) (Drift, bool, error) {
	d := Drift{TicketID: ref.ID, IndexTenant: ref.Tenant, IndexProject: ref.Project, EngineTenant: ref.Tenant, EngineProject: ref.Project, chunks: ref.Chunks}
	res, err := lex.SearchLexical(ctx, retrieval.LexicalRequest{Terms: lexical.Terms(ref.ID),
		Filter: retrieval.Filter{Tenant: ref.Tenant, Tickets: []string{ref.ID}}, K: ref.Chunks + 1})
	if err != nil {
		return d, false, fmt.Errorf("lexical search for %s: %w", ref.ID, err)
	}
	n := 0
	for _, h := range res.Hits {
		if h.TicketID == ref.ID && h.Project == ref.Project {
			n++
		}
	}
	if n == ref.Chunks && len(res.Hits) == n {
		return d, false, nil
	}
	d.Kind = DriftLexical
	return d, true, nil
}

func fix(ctx context.Context, cfg ReconcileConfig, d *Drift) error {
	switch d.Kind {
	case DriftProject:
		if err := cfg.Store.Move(ctx, d.TicketID, d.EngineProject); err != nil {
			return fmt.Errorf("move %s: %w", d.TicketID, err)
		}
		d.Fixed = true
	case DriftTenant, DriftLexical:
		if cfg.Embedder == nil {
			d.NotFixed = "the fix re-embeds the ticket and no embedder was given"
			return nil
		}
		t, err := cfg.Store.Get(ctx, d.TicketID)
		if errors.Is(err, retrieval.ErrNotFound) {
			d.NotFixed = "the ticket was deleted meanwhile"
			return nil
		}
		if err != nil {
			return fmt.Errorf("get %s: %w", d.TicketID, err)
		}
		if t.Body == "" && d.chunks > 1 {
			d.NotFixed = "the store did not return the ticket's body; re-index it from its source"
			return nil
		}
		t.Tenant, t.Project = d.EngineTenant, d.EngineProject
		t.ContentHash = ContentHash(t)
		ix := &Indexer{cfg: Config{Store: cfg.Store, Embedder: cfg.Embedder, Chunker: cfg.Chunker}}
		var writes errgroup.Group
		err = ix.embedAndWrite(ctx, ctx, &writes, semaphore.NewWeighted(inflightChunks), []pendingTicket{{t: t, chunks: cfg.Chunker.Chunk(t)}}, nil, &tally{log: slog.New(slog.DiscardHandler)})
		if err := errors.Join(err, writes.Wait()); err != nil {
			return err
		}
		d.Fixed = true
	default:
		d.NotFixed = "the engine does not say where the ticket belongs"
	}
	return nil
}

// readUsers reads the tuples matching f and calls fn with each object's id and
// its user's id, for users of userType (usersets are ignored).
func readUsers(ctx context.Context, e TupleReader, f authz.TupleFilter, userType string, fn func(objectID, userID string)) error {
	for tp, err := range e.Read(ctx, f) {
		if err != nil {
			return fmt.Errorf("read %s#%s tuples: %w", f.Object, f.Relation, err)
		}
		_, obj, ok1 := strings.Cut(tp.Object, ":")
		user, ok2 := strings.CutPrefix(tp.User, userType+":")
		if !ok1 || !ok2 || strings.Contains(user, "#") || tp.Relation != f.Relation {
			continue
		}
		fn(obj, user)
	}
	return nil
}
