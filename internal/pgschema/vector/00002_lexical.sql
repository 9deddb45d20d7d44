-- The lexical (BM25) arm of the pgvector store. Tokens come from clearance's
-- own tokenizer (retrieval/lexical), never PostgreSQL's text-search parser,
-- which would split ERR_CONN_RESET or 1.22.1 differently from the embedded
-- store and the query side. Per chunk: its distinct terms (sorted), their
-- weighted frequencies aligned with them, and its weighted length; per
-- ticket: the sum of its chunks' lengths, so a search reads the corpus size
-- and average length of its filter from the narrow tickets table.
--
-- Rows written before this step (or by an older binary during a rolling
-- upgrade) have NULL lex_len; the store tokenizes them in Go before it answers
-- a lexical search (retrieval/pgvector/lexical.go). The partial index keeps
-- that check to one probe of an (almost always) empty index.
-- Never edit this file: append a new migration.
ALTER TABLE clearance_vector_chunks
  ADD COLUMN IF NOT EXISTS lex_terms text[] COLLATE "C",
  ADD COLUMN IF NOT EXISTS lex_tfs real[],
  ADD COLUMN IF NOT EXISTS lex_len real;
ALTER TABLE clearance_vector_tickets
  ADD COLUMN IF NOT EXISTS lex_len double precision;
CREATE INDEX IF NOT EXISTS clearance_vector_chunks_lex_terms ON clearance_vector_chunks USING gin (lex_terms);
CREATE INDEX IF NOT EXISTS clearance_vector_chunks_lex_missing ON clearance_vector_chunks (ticket_id) WHERE lex_len IS NULL;
