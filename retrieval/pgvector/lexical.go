package pgvector

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// The lexical arm (retrieval.LexicalSearcher). Each chunk row carries the
// lexical form clearance's own tokenizer gives it (lexical.Analyze: distinct
// terms sorted, their weighted frequencies, the weighted length), and each
// ticket row the sum of its chunks' lengths. Triggers copy the chunk's form
// into the narrow table clearance_vector_lexical (a jsonb object term ->
// frequency under a GIN index, and the length) that searches read
// (docs/decisions/pgvector-lexical-table.md). The score expression is
// lexical.TermScore's, operation for operation in float8, summed in the same
// (sorted) term order, with IDFs from clearance_ln (lexical.Ln in SQL): scores
// equal the embedded store's and the conformance reference's. Every statistic
// comes from rows the filter allows (docs/decisions/lexical-statistics.md).

var _ retrieval.LexicalSearcher = (*Store)(nil)

// chunkColumns are the chunk table's columns every write fills, the lexical
// ones included, in the order of the rows writeBatch builds.
var chunkColumns = []string{"ticket_id", "ordinal", "tenant", "project", "text", "embedding", "lex_terms", "lex_tfs", "lex_len"}

// maxQueryTerms bounds the distinct terms of one lexical search: each becomes
// a few parameters and an expression of the scoring statement.
const maxQueryTerms = 1000

// fillBatch is how many tickets one backfill transaction tokenizes.
const fillBatch = 200

// analyze returns the lexical documents of a ticket's chunks and the sum of
// their lengths (the ticket row's lex_len).
func analyze(id, title string, chunks []retrieval.Chunk) ([]lexical.Doc, float64) {
	docs := make([]lexical.Doc, len(chunks))
	var sum float64
	for i, c := range chunks {
		docs[i] = lexical.Analyze(id, title, c.Text)
		sum += float64(docs[i].Len)
	}
	return docs, sum
}

// lexColumns splits a document into its lex_terms and lex_tfs arrays.
func lexColumns(d lexical.Doc) ([]string, []float32) {
	terms, tfs := make([]string, len(d.Terms)), make([]float32, len(d.Terms))
	for i, t := range d.Terms {
		terms[i], tfs[i] = t.Term, t.TF
	}
	return terms, tfs
}

// SearchLexical implements retrieval.LexicalSearcher with BM25 over the chunks
// the filter allows. It is exact (plan "bm25").
func (s *Store) SearchLexical(ctx context.Context, r retrieval.LexicalRequest) (retrieval.SearchResult, error) {
	if r.K < 1 {
		return retrieval.SearchResult{}, clearance.Invalid("k", "must be at least 1, got %d", r.K)
	}
	if r.Offset < 0 {
		return retrieval.SearchResult{}, clearance.Invalid("offset", "must not be negative, got %d", r.Offset)
	}
	terms := lexical.QueryTerms(r.Terms)
	if len(terms) > maxQueryTerms {
		return retrieval.SearchResult{}, clearance.Invalid("query", "at most %d distinct terms, got %d", maxQueryTerms, len(terms))
	}
	res := retrieval.SearchResult{Plan: retrieval.PlanBM25, Exact: true}
	if r.Filter.Empty() || len(terms) == 0 {
		return res, nil
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	s.checkLexicalIndex(ctx)
	var missing bool
	err := s.onReplica(ctx, func(pool *pgxpool.Pool) (err error) {
		res.Hits, missing, err = s.searchLexical(ctx, pool, terms, r)
		return err
	})
	if err == nil && missing {
		// Rows without tokens (written before the lexical migration, or by an
		// older binary during a rolling upgrade): tokenize them on the primary,
		// then answer from the primary, which has them for sure. Never answer
		// without them: the search would be silently incomplete.
		if err = s.fillLexical(ctx); err == nil {
			res.Hits, missing, err = s.searchLexical(ctx, s.pool, terms, r)
			if err == nil && missing {
				err = unavailable("lexical search", fmt.Errorf("chunks without lexical tokens remain after the backfill"))
			}
		}
	}
	if err != nil {
		return retrieval.SearchResult{}, err
	}
	s.log.DebugContext(ctx, "pgvector lexical search", "terms", len(terms), "k", r.K, "offset", r.Offset, "hits", len(res.Hits))
	return res, nil
}

// lexicalRecheck is how long a store trusts that it saw the lexical indexes
// valid before a lexical search looks again (four catalog lookups).
const lexicalRecheck = 30 * time.Second

// lexSeenValid records that every lexical index was valid just now.
func (s *Store) lexSeenValid() { s.lexValidAt.Store(time.Now().UnixNano()) }

// checkLexicalIndex starts building the lexical table's GIN indexes in the
// background when one is missing or invalid (a bulk load running, here or on
// another replica, or one that died): searches answer the same without them,
// reading every allowed row. Once it has seen them valid it looks again only
// after lexRecheck; a failed look is left to the next search.
func (s *Store) checkLexicalIndex(ctx context.Context) {
	if at := s.lexValidAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < s.lexRecheck {
		return
	}
	st, err := lexicalIndexStatus(ctx, s.pool)
	switch {
	case err != nil:
		s.log.DebugContext(ctx, "pgvector: lexical index status", "err", err)
	case st == IndexValid:
		s.lexSeenValid()
	default:
		s.lexValidAt.Store(0)
		s.buildInBackground()
	}
}

// searchLexical runs one lexical search on pool. missing reports chunks
// without lexical columns anywhere in the table, in which case it has no hits.
//
// One statement reads the filter's statistics and scores in one scan of the
// narrow lexical table: it gathers the allowed rows holding any query term
// (GIN) with each term's frequency in them, counts the document frequencies
// over those rows, computes the IDFs and the average length, and ranks the
// rows by BM25 with them. The IDFs use clearance_ln, lexical.Ln in SQL
// (PostgreSQL's own ln differs from Go's in the last bit for some counts). The
// statement also returns the frequencies and the IDFs it used: when every IDF
// equals lexical.IDF of the same counts (always, unless the server's float
// arithmetic is not IEEE double's), the scores are lexical's to the bit;
// otherwise the rows are scored again in the same snapshot with Go's IDFs
// passed in (scoreLexical), and a warning says so.
func (s *Store) searchLexical(ctx context.Context, pool *pgxpool.Pool, terms []string, r retrieval.LexicalRequest) (hits []retrieval.Hit, missing bool, err error) {
	// One snapshot for a possible second statement: a write between them
	// would otherwise make the IDFs disagree with the rows scored.
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// The gathered rows stay in memory up to this size (a ticket-key query
		// matches every allowed chunk; about 100 bytes each).
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL work_mem = '%dMB'", lexicalWorkMemMB)); err != nil {
			return err
		}
		q, args := lexicalQuery(r, terms)
		var (
			n, sumDL float64
			avgdl    *float64
			dfs      = make([]int64, len(terms))
			idfs     = make([]float64, len(terms))
			top      []retrieval.Hit
		)
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				id, tenant, project, title, text *string
				ord                              *int32
				score                            *float64
			)
			dest := []any{&n, &sumDL, &avgdl, &missing}
			for i := range terms {
				dest = append(dest, &dfs[i], &idfs[i])
			}
			dest = append(dest, &id, &tenant, &project, &title, &ord, &text, &score)
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return err
			}
			if id != nil { // the one row of an empty ranking has only the statistics
				top = append(top, retrieval.Hit{TicketID: *id, Tenant: *tenant, Project: *project, Title: *title, Ordinal: int(*ord), Text: *text, Score: float32(*score)})
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if missing || n == 0 || avgdl == nil || *avgdl <= 0 {
			return nil
		}
		df := make(map[string]int, len(terms))
		var found []string
		same := *avgdl == sumDL/n
		for i, t := range terms {
			df[t] = int(dfs[i])
			if dfs[i] > 0 {
				found = append(found, t)
				same = same && idfs[i] == lexical.IDF(int(n), int(dfs[i]))
			}
		}
		if (same && !s.goIDFs) || len(found) == 0 {
			hits = top
			return nil
		}
		if !s.goIDFs {
			s.log.WarnContext(ctx, "pgvector: the server's BM25 statistics differ from Go's in the last bit; scoring again with Go's (twice the work)")
		}
		hits, err = scoreLexical(ctx, tx, r, found, df, int(n), sumDL/n)
		return err
	})
	if err != nil {
		return nil, false, unavailable("lexical search", err)
	}
	return hits, missing, nil
}

// lexicalWorkMemMB is work_mem of a lexical search's transaction.
const lexicalWorkMemMB = 32

// lexicalQuery is searchLexical's statement for terms (sorted, distinct).
// Its rows: n, the total length, the average length, missing, then each
// term's document frequency and IDF, then a hit's ticket id, tenant, project,
// title, ordinal, text and score; the hit columns are NULL in the one row of
// an empty ranking.
func lexicalQuery(r retrieval.LexicalRequest, terms []string) (string, []any) {
	// $1 terms, $2 K1+1, $3 K1, $4 1-B, $5 B; then each term; then the
	// filter's arguments, once for the tickets and once for the rows.
	args := []any{terms, float64(lexical.K1 + 1), float64(lexical.K1), float64(1 - lexical.B), float64(lexical.B)}
	var tfs, dfs, idfs, outs, score strings.Builder
	score.WriteString("0::float8")
	for i, t := range terms {
		args = append(args, t)
		if i > 0 {
			tfs.WriteString(", ")
			dfs.WriteString(", ")
		}
		fmt.Fprintf(&tfs, "coalesce((c.doc ->> $%d::text)::float8, 0) AS f%d", len(args), i)
		fmt.Fprintf(&dfs, "count(*) FILTER (WHERE m.f%[1]d > 0)::float8 AS d%[1]d", i)
		// lexical.IDF: Ln(1 + (n - df + 0.5) / (df + 0.5)).
		fmt.Fprintf(&idfs, ",\n    clearance_ln(1::float8 + (st.n - d.d%[1]d + 0.5::float8) / (d.d%[1]d + 0.5::float8)) AS i%[1]d", i)
		fmt.Fprintf(&outs, ", p.d%[1]d::int8, p.i%[1]d", i)
		// lexical.TermScore: idf * f * (K1+1) / (f + K1*((1-B) + B*dl/avgdl)),
		// added in the reference's (sorted) order; an absent term adds exactly 0.
		fmt.Fprintf(&score, "\n    + CASE WHEN m.f%[1]d > 0 THEN p.i%[1]d * m.f%[1]d * $2::float8 / (m.f%[1]d + $3::float8 * ($4::float8 + $5::float8 * m.dl / p.avgdl)) ELSE 0 END", i)
	}
	tcond, targs := where(r.Filter, "id", len(args)+1)
	args = append(args, targs...)
	cond, cargs := where(r.Filter, "ticket_id", len(args)+1)
	args = append(args, cargs...)
	// A ticket rewritten with no chunks by an older binary may keep a stale
	// lex_len: its length is 0 whatever the column says. m is materialized,
	// so each term's frequency is looked up once per row however often the
	// later steps use it.
	q := fmt.Sprintf(`
WITH st AS (
  SELECT coalesce(sum(c.chunks), 0)::float8 AS n,
    coalesce(sum(CASE WHEN c.chunks = 0 THEN 0 ELSE c.lex_len END), 0)::float8 AS dl,
    EXISTS (SELECT 1 FROM clearance_vector_chunks WHERE lex_len IS NULL) AS missing
  FROM clearance_vector_tickets c WHERE %s),
m AS MATERIALIZED (
  SELECT c.ticket_id, c.ordinal, c.len::float8 AS dl, %s
  FROM clearance_vector_lexical c
  WHERE c.doc ?| $1::text[] AND %s),
d AS (SELECT %s FROM m),
p AS (
  SELECT st.n, st.dl, st.dl / nullif(st.n, 0) AS avgdl, st.missing, d.*%s
  FROM st CROSS JOIN d),
top AS (
  SELECT m.ticket_id, m.ordinal, %s AS score
  FROM m CROSS JOIN p WHERE NOT p.missing AND p.avgdl > 0
  ORDER BY score DESC, m.ticket_id, m.ordinal OFFSET %d LIMIT %d),
hit AS (
  SELECT x.ticket_id, t.tenant, t.project, t.title, x.ordinal, ch.text, x.score
  FROM top x JOIN clearance_vector_tickets t ON t.id = x.ticket_id
  JOIN clearance_vector_chunks ch ON ch.ticket_id = x.ticket_id AND ch.ordinal = x.ordinal)
SELECT p.n, p.dl, p.avgdl, p.missing%s, h.*
FROM p LEFT JOIN hit h ON true
ORDER BY h.score DESC, h.ticket_id, h.ordinal`, tcond, tfs.String(), cond, dfs.String(), idfs.String(), score.String(), r.Offset, r.K, outs.String())
	return q, args
}

// scoreLexical ranks the allowed chunks holding any of terms (sorted, each
// with df[term] > 0) by BM25 over n chunks of average length avgdl, with the
// IDFs computed in Go.
func scoreLexical(ctx context.Context, tx pgx.Tx, r retrieval.LexicalRequest, terms []string, df map[string]int, n int, avgdl float64) ([]retrieval.Hit, error) {
	// $1 terms, $2 K1+1, $3 K1, $4 1-B, $5 B, $6 avgdl; then each term and its
	// IDF; then the filter's arguments.
	args := []any{terms, float64(lexical.K1 + 1), float64(lexical.K1), float64(1 - lexical.B), float64(lexical.B), avgdl}
	var tfs, score strings.Builder
	score.WriteString("0::float8")
	for i, t := range terms {
		pt, pi := len(args)+1, len(args)+2
		args = append(args, t, lexical.IDF(n, df[t]))
		if i > 0 {
			tfs.WriteString(", ")
		}
		fmt.Fprintf(&tfs, "coalesce((c.doc ->> $%d::text)::float8, 0) AS f%d", pt, i)
		fmt.Fprintf(&score, "\n    + CASE WHEN tf.f%[1]d > 0 THEN $%[2]d::float8 * tf.f%[1]d * $2::float8 / (tf.f%[1]d + $3::float8 * ($4::float8 + $5::float8 * c.len::float8 / $6::float8)) ELSE 0 END", i, pi)
	}
	cond, fargs := where(r.Filter, "ticket_id", len(args)+1)
	args = append(args, fargs...)
	q := fmt.Sprintf(`
WITH top AS (
  SELECT c.ticket_id, c.ordinal, %s AS score
  FROM clearance_vector_lexical c CROSS JOIN LATERAL (SELECT %s OFFSET 0) tf
  WHERE c.doc ?| $1::text[] AND %s
  ORDER BY score DESC, c.ticket_id, c.ordinal OFFSET %d LIMIT %d)
SELECT x.ticket_id, t.tenant, t.project, t.title, x.ordinal, ch.text, x.score
FROM top x JOIN clearance_vector_tickets t ON t.id = x.ticket_id
JOIN clearance_vector_chunks ch ON ch.ticket_id = x.ticket_id AND ch.ordinal = x.ordinal
ORDER BY x.score DESC, x.ticket_id, x.ordinal`, score.String(), tfs.String(), cond, r.Offset, r.K)
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (retrieval.Hit, error) {
		var h retrieval.Hit
		var ord int32
		var sc float64
		err := row.Scan(&h.TicketID, &h.Tenant, &h.Project, &h.Title, &ord, &h.Text, &sc)
		h.Ordinal, h.Score = int(ord), float32(sc)
		return h, err
	})
}

// fillLexical tokenizes, on the primary, every chunk that has no lexical
// columns yet: rows from before the lexical migration, or written by an older
// binary during a rolling upgrade. The tokens come from Go, so SQL cannot
// backfill them. Each transaction takes up to fillBatch tickets, locks their
// rows in id order (as writers do, so neither deadlocks nor interleaves with an
// upsert of the same ticket) and rewrites the columns of all their chunks and
// the tickets' total lengths; committed batches stay done if ctx ends first.
func (s *Store) fillLexical(ctx context.Context) error {
	total := 0
	for {
		done := 0
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, fmt.Sprintf(`
SELECT id, title FROM clearance_vector_tickets
WHERE id IN (SELECT DISTINCT ticket_id FROM clearance_vector_chunks WHERE lex_len IS NULL LIMIT %d)
ORDER BY id FOR UPDATE`, fillBatch))
			if err != nil {
				return err
			}
			titles := map[string]string{}
			var ids []string
			var id, title string
			if _, err := pgx.ForEachRow(rows, []any{&id, &title}, func() error {
				titles[id] = title
				ids = append(ids, id)
				return nil
			}); err != nil || len(ids) == 0 {
				return err
			}
			rows, err = tx.Query(ctx, `SELECT ticket_id, ordinal, text FROM clearance_vector_chunks WHERE ticket_id = ANY($1::text[])`, ids)
			if err != nil {
				return err
			}
			sums := make(map[string]float64, len(ids))
			var b pgx.Batch
			var ord int32
			var text string
			if _, err := pgx.ForEachRow(rows, []any{&id, &ord, &text}, func() error {
				d := lexical.Analyze(id, titles[id], text)
				terms, tfs := lexColumns(d)
				sums[id] += float64(d.Len)
				b.Queue(`UPDATE clearance_vector_chunks SET lex_terms = $3, lex_tfs = $4, lex_len = $5 WHERE ticket_id = $1 AND ordinal = $2`,
					id, ord, terms, tfs, d.Len)
				return nil
			}); err != nil {
				return err
			}
			lens := make([]float64, len(ids))
			for i, id := range ids {
				lens[i] = sums[id]
			}
			b.Queue(`UPDATE clearance_vector_tickets t SET lex_len = u.l FROM unnest($1::text[], $2::float8[]) u(id, l) WHERE t.id = u.id`, ids, lens)
			done = len(ids)
			return tx.SendBatch(ctx, &b).Close()
		})
		if err != nil {
			return unavailable("lexical backfill", err)
		}
		if done == 0 {
			if total > 0 {
				s.log.InfoContext(ctx, "pgvector: lexical tokens backfilled", "tickets", total)
			}
			return nil
		}
		total += done
	}
}
