package api

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/retrieval"
)

// TicketWriter indexes tickets pushed through the API (POST and DELETE
// /v1/tickets) and, when it owns the engine's tuples (embedded engine), keeps each
// ticket's ticket#project tuple in step with the index.
//
// Order of writes, chosen so that a crash in between never lets a ticket through
// to someone who may not see it: on upsert the tuple is written first (a stale
// index entry is then denied by the post-filter, and a missing one is merely not
// found); on delete every tuple of the ticket goes first (blocks last), then the
// index entry, so no tuple outlives its ticket for a reused id to inherit.
type TicketWriter struct {
	Store   retrieval.Store
	Indexer *indexer.Indexer
	// Engine is nil when the engine's tuples are owned elsewhere (a remote OpenFGA
	// fed by the ticket system): then only the index is written.
	Engine authz.Engine
	Logger *slog.Logger

	// mu serializes batches: each reads a ticket's current tuples and then
	// replaces them, so two concurrent moves of one ticket could otherwise both
	// keep their project tuple (and the ticket stay readable in the old project).
	mu sync.Mutex
}

// ticketTuple is the ticket#project tuple of a ticket.
func ticketTuple(id, project string) authz.Tuple {
	return authz.Tuple{User: "project:" + project, Relation: "project", Object: "ticket:" + id}
}

// tenantBound reports whether p may only write tickets of its own tenant. The
// indexing scopes on a user token come from the operator's issuer and index for
// every tenant; a tenant's service account (or an agent) never leaves its tenant.
func tenantBound(p authz.Principal) bool { return p.Kind != authz.KindUser }

// Apply validates every row, then writes them: all or nothing on validation
// (a bad row writes nothing and its error names tickets[i].field).
func (w *TicketWriter) Apply(ctx context.Context, p authz.Principal, rows []indexer.Row) (indexer.Summary, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := make(map[string]int, len(rows))
	for i, r := range rows {
		field := fmt.Sprintf("tickets[%d]", i)
		if err := r.Validate(field); err != nil {
			return indexer.Summary{}, err
		}
		if j, dup := seen[r.ID]; dup {
			return indexer.Summary{}, clearance.Invalid(field+".id", "duplicates tickets[%d].id", j)
		}
		seen[r.ID] = i
		if !r.Deleted && tenantBound(p) && r.Tenant != p.Tenant {
			return indexer.Summary{}, clearance.Invalid(field+".tenant", "must be the caller's tenant %q", p.Tenant)
		}
	}
	// Ids are global: a tenant-bound caller must not overwrite or delete another
	// tenant's ticket. Its delete of one is answered like the delete of a missing
	// id (nothing happens), so deletes reveal no other tenant's ids.
	kept := make([]indexer.Row, 0, len(rows))
	for i, r := range rows {
		ok, err := w.checkOwner(ctx, p, r, fmt.Sprintf("tickets[%d].id", i))
		if err != nil {
			return indexer.Summary{}, err
		}
		if ok {
			kept = append(kept, r)
		}
	}
	ignored := len(rows) - len(kept)
	sum, err := w.write(ctx, kept)
	// Counted like the deletion of a ticket that is not indexed.
	sum.Seen += ignored
	sum.Unchanged += ignored
	return sum, err
}

// write applies validated rows the caller may write.
func (w *TicketWriter) write(ctx context.Context, rows []indexer.Row) (indexer.Summary, error) {
	if w.Engine == nil {
		return w.index(ctx, rows)
	}
	if err := w.checkProjects(ctx, rows); err != nil {
		return indexer.Summary{}, err
	}
	writes, deletes, err := w.tupleChanges(ctx, rows)
	if err != nil {
		return indexer.Summary{}, err
	}
	// Deletes: every tuple of the ticket goes before the index entry, so a
	// crash in between leaves an indexed ticket nobody may view (a retried
	// DELETE finishes it), never tuples that a new ticket with the same id
	// would inherit.
	for _, r := range rows {
		if !r.Deleted {
			continue
		}
		if _, err := indexer.PurgeTicket(ctx, w.Engine, r.ID); err != nil {
			return indexer.Summary{}, err
		}
	}
	// Upserts: tuples first, then the index.
	if len(writes) > 0 || len(deletes) > 0 {
		if err := w.Engine.Write(ctx, writes, deletes); err != nil {
			return indexer.Summary{}, fmt.Errorf("write ticket#project tuples: %w", err)
		}
	}
	return w.index(ctx, rows)
}

// Delete removes one ticket: its tuples, then its index entry.
func (w *TicketWriter) Delete(ctx context.Context, p authz.Principal, id string) error {
	if err := indexer.ValidateDelete(id, ""); err != nil {
		return err
	}
	_, err := w.Apply(ctx, p, []indexer.Row{{Ticket: retrieval.Ticket{ID: id}, Deleted: true}})
	var fe *clearance.FieldError
	if errors.As(err, &fe) {
		// Reported against the path, not a batch that the caller never sent.
		return clearance.Invalid(strings.TrimPrefix(fe.Field, "tickets[0]."), "%s", fe.Reason)
	}
	return err
}

// checkOwner decides whether p may write row r. Callers that are not
// tenant-bound (operators, the indexing token) may write any id. A tenant-bound
// caller may upsert an id that is missing or its tenant's; an id indexed for
// another tenant is refused: ids are global, so a create necessarily says that
// an id is taken (docs/decisions/global-ticket-ids.md), and nothing more. A
// tenant-bound caller's delete is kept (true) only for its own ticket: indexed
// in its tenant or, when not indexed, whose ticket#project tuple names one of its
// tenant's projects (tuples left by an interrupted delete). Any other delete is
// dropped (false) and answered like the delete of a missing id.
func (w *TicketWriter) checkOwner(ctx context.Context, p authz.Principal, r indexer.Row, field string) (bool, error) {
	if !tenantBound(p) {
		return true, nil
	}
	t, err := w.Store.Get(ctx, r.ID)
	switch {
	case errors.Is(err, clearance.ErrNotFound):
		if !r.Deleted {
			return true, nil
		}
		return w.ownedByTuples(ctx, p.Tenant, r.ID)
	case err != nil:
		return false, fmt.Errorf("look up ticket: %w", err)
	case t.Tenant == p.Tenant:
		return true, nil
	case r.Deleted:
		// The same engine read as for a missing id, so the two take alike; the
		// answer is ignored: the index says the ticket is another tenant's.
		if _, err := w.ownedByTuples(ctx, p.Tenant, r.ID); err != nil {
			return false, err
		}
		return false, nil
	}
	return false, clearance.Invalid(field, "is taken (ticket ids are global across tenants; choose another id)")
}

// ownedByTuples reports whether the engine places ticket id in a project of
// tenant (no engine: nothing to purge, and the index has no such ticket).
func (w *TicketWriter) ownedByTuples(ctx context.Context, tenant, id string) (bool, error) {
	if w.Engine == nil {
		return true, nil
	}
	for t, err := range w.Engine.Read(ctx, authz.TupleFilter{Object: "ticket:" + id, Relation: "project"}) {
		if err != nil {
			return false, fmt.Errorf("read ticket#project: %w", err)
		}
		for pt, err := range w.Engine.Read(ctx, authz.TupleFilter{Object: t.User, Relation: "tenant"}) {
			if err != nil {
				return false, fmt.Errorf("read project#tenant: %w", err)
			}
			if pt.User == "tenant:"+tenant {
				return true, nil
			}
		}
	}
	return false, nil
}

// checkProjects refuses a row whose project the engine places in another tenant.
// A project without a tenant tuple is accepted: it may be registered later, and
// until then only its direct members can see its tickets.
func (w *TicketWriter) checkProjects(ctx context.Context, rows []indexer.Row) error {
	tenants := map[string]string{}
	for i, r := range rows {
		if r.Deleted {
			continue
		}
		tenant, ok := tenants[r.Project]
		if !ok {
			for t, err := range w.Engine.Read(ctx, authz.TupleFilter{Object: "project:" + r.Project, Relation: "tenant"}) {
				if err != nil {
					return fmt.Errorf("read project#tenant: %w", err)
				}
				tenant = strings.TrimPrefix(t.User, "tenant:")
				break
			}
			tenants[r.Project] = tenant
		}
		if tenant != "" && tenant != r.Tenant {
			return clearance.Invalid(fmt.Sprintf("tickets[%d].project", i), "belongs to another tenant than %q", r.Tenant)
		}
	}
	return nil
}

// tupleChanges compares each upserted row with the ticket's stored
// ticket#project tuples (deleted rows are purged whole instead).
func (w *TicketWriter) tupleChanges(ctx context.Context, rows []indexer.Row) (writes, deletes []authz.Tuple, err error) {
	for _, r := range rows {
		if r.Deleted {
			continue
		}
		have := false
		for t, err := range w.Engine.Read(ctx, authz.TupleFilter{Object: "ticket:" + r.ID, Relation: "project"}) {
			if err != nil {
				return nil, nil, fmt.Errorf("read ticket#project: %w", err)
			}
			if t.User == "project:"+r.Project {
				have = true
				continue
			}
			// A move: the old project must stop granting access.
			deletes = append(deletes, authz.Tuple{User: t.User, Relation: t.Relation, Object: t.Object})
		}
		if !have {
			writes = append(writes, ticketTuple(r.ID, r.Project))
		}
	}
	return writes, deletes, nil
}

// index chunks, embeds and writes the rows through the indexer (which skips
// unchanged content and applies moves without re-embedding).
func (w *TicketWriter) index(ctx context.Context, rows []indexer.Row) (indexer.Summary, error) {
	sum, err := w.Indexer.Run(ctx, rowSource(rows))
	if err != nil {
		return sum, err
	}
	if sum.Failed > 0 {
		reason := "indexing failed"
		if len(sum.Failures) > 0 {
			reason = sum.Failures[0].String()
		}
		w.logger().Warn("ticket batch partly failed", "failed", sum.Failed, "first", reason)
		return sum, fmt.Errorf("%d of %d tickets not indexed: %w", sum.Failed, len(rows), clearance.ErrUnavailable)
	}
	return sum, nil
}

func (w *TicketWriter) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// rowSource is one API batch as an indexer source.
type rowSource []indexer.Row

func (rowSource) Name() string { return "api" }

func (s rowSource) Read(_ context.Context, _ string) iter.Seq2[indexer.Batch, error] {
	return func(yield func(indexer.Batch, error) bool) {
		b := indexer.Batch{Rows: make([]indexer.SourceRow, len(s))}
		for i, r := range s {
			b.Rows[i] = indexer.SourceRow{Row: r, Ref: fmt.Sprintf("tickets[%d]", i)}
		}
		yield(b, nil)
	}
}
