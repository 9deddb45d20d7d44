package pgvector

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	pgv "github.com/pgvector/pgvector-go"

	"github.com/clearance-dev/clearance/retrieval"
)

// Group commit: concurrent Upsert calls are written together, several tickets
// per transaction, by at most Config.Writers transactions at a time. One
// transaction per ticket cost a commit, three statements and a round trip each
// (390 chunks/s in the bench); a batch costs them once. Each ticket is still all
// or nothing (a transaction holds whole tickets), and a caller returns only
// after the transaction holding its ticket committed, so the indexer's
// watermark never passes an unwritten ticket.

// pending is one queued upsert; done receives its outcome.
type pending struct {
	t      retrieval.Ticket
	chunks []retrieval.Chunk
	// rows are the chunk table's rows (chunkColumns) and lexLen the ticket's
	// lexical length, prepared by the caller (newPending) so that the writer
	// holding a transaction does no tokenizing: with two writers, the
	// tokenizing was serialized with the round trips.
	rows   [][]any
	lexLen float64
	done   chan error
}

// newPending prepares an upsert of t with chunks: the lexical columns are
// computed here, from the same chunks as the vectors, so both arms are written
// together.
func newPending(t retrieval.Ticket, chunks []retrieval.Chunk) *pending {
	docs, lexLen := analyze(t.ID, t.Title, chunks)
	rows := make([][]any, len(chunks))
	for j, c := range chunks {
		terms, tfs := lexColumns(docs[j])
		rows[j] = []any{t.ID, int32(c.Ordinal), t.Tenant, t.Project, c.Text, pgv.NewVector(c.Vector), terms, tfs, docs[j].Len}
	}
	return &pending{t: t, chunks: chunks, rows: rows, lexLen: lexLen, done: make(chan error, 1)}
}

// group is the upsert queue and its writer slots.
type group struct {
	mu      sync.Mutex
	queue   []*pending
	writers int // leaders running
}

// upsertGrouped queues p and either becomes a writer (a free slot) or waits for
// one to write it.
func (s *Store) upsertGrouped(ctx context.Context, p *pending) error {
	g := &s.group
	g.mu.Lock()
	g.queue = append(g.queue, p)
	lead := g.writers < s.cfg.Writers
	if lead {
		g.writers++
	}
	g.mu.Unlock()
	if lead {
		// The writer keeps draining batches (its own first) until the queue is
		// empty: its caller waits for one batch more at most.
		go s.drain(context.WithoutCancel(ctx))
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The ticket may still be written by the batch it is in; the caller
		// learns only that it was not confirmed (re-upserting is idempotent).
		return unavailable("upsert", ctx.Err())
	}
}

// drain writes batches until the queue is empty, then frees its slot.
func (s *Store) drain(ctx context.Context) {
	g := &s.group
	for {
		g.mu.Lock()
		batch := takeBatch(&g.queue, s.cfg.BatchChunks)
		if len(batch) == 0 {
			g.writers--
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		err := s.writeBatch(ctx, batch)
		if err != nil && len(batch) > 1 {
			// One ticket's failure (or a deadlock with another writer) must not
			// fail the others: write each alone, as before batching.
			for _, p := range batch {
				p.done <- s.writeBatch(ctx, []*pending{p})
			}
			continue
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

// takeBatch removes from q its longest prefix of upserts with distinct ids and
// at most maxChunks chunks in all (at least one upsert). The prefix keeps queue
// order: a second upsert of an id is applied after the first, never with it.
func takeBatch(q *[]*pending, maxChunks int) []*pending {
	seen := map[string]bool{}
	chunks, n := 0, 0
	for _, p := range *q {
		if seen[p.t.ID] || (n > 0 && chunks+len(p.chunks) > maxChunks) {
			break
		}
		seen[p.t.ID] = true
		chunks += len(p.chunks)
		n++
	}
	batch := slices.Clone((*q)[:n])
	rest := slices.Delete(*q, 0, n)
	*q = rest
	return batch
}

// writeBatch replaces the tickets of batch and all their chunks in one
// transaction.
func (s *Store) writeBatch(ctx context.Context, batch []*pending) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	// Ticket rows in id order: concurrent batches lock rows in the same order and
	// cannot deadlock on them.
	batch = slices.Clone(batch)
	slices.SortFunc(batch, func(a, b *pending) int { return strings.Compare(a.t.ID, b.t.ID) })
	n := len(batch)
	var (
		ids, tenants, projects, titles, bodies, hashes = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		updated                                        = make([]time.Time, n)
		counts                                         = make([]int32, n)
		lexLens                                        = make([]float64, n)
		total                                          int
	)
	for i, p := range batch {
		t := p.t
		ids[i], tenants[i], projects[i], titles[i], bodies[i], hashes[i] = t.ID, t.Tenant, t.Project, t.Title, t.Body, t.ContentHash
		updated[i], counts[i] = t.UpdatedAt, int32(len(p.chunks))
		total += len(p.chunks)
		// The lexical columns are written with the chunks, in the same
		// transaction: the two arms never disagree about a ticket.
		lexLens[i] = p.lexLen
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The ticket rows first: their row locks order concurrent writers of a
		// ticket, so the second one's DELETE sees the first one's chunks.
		_, err := tx.Exec(ctx, `
INSERT INTO clearance_vector_tickets (id, tenant, project, title, body, updated_at, content_hash, chunks, lex_len)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::int[], $9::float8[])
ON CONFLICT (id) DO UPDATE SET tenant = EXCLUDED.tenant, project = EXCLUDED.project,
  title = EXCLUDED.title, body = EXCLUDED.body, updated_at = EXCLUDED.updated_at,
  content_hash = EXCLUDED.content_hash, chunks = EXCLUDED.chunks, lex_len = EXCLUDED.lex_len`,
			ids, tenants, projects, titles, bodies, updated, hashes, counts, lexLens)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM clearance_vector_chunks WHERE ticket_id = ANY($1::text[])`, ids); err != nil {
			return err
		}
		if total == 0 {
			return nil
		}
		rows := make([][]any, 0, total)
		for _, p := range batch {
			rows = append(rows, p.rows...)
		}
		// Rows by (tenant, project): COPY appends them in this order, so a
		// batch's chunks of one tenant share pages and an exact scan of a
		// tenant reads fewer pages holding other tenants' rows (the vectors
		// are stored inline, a few rows a page).
		slices.SortStableFunc(rows, func(a, b []any) int {
			if c := strings.Compare(a[2].(string), b[2].(string)); c != 0 {
				return c
			}
			return strings.Compare(a[3].(string), b[3].(string))
		})
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"clearance_vector_chunks"}, chunkColumns, pgx.CopyFromRows(rows))
		return err
	})
	if err != nil {
		return unavailable("upsert", err)
	}
	return nil
}
