-- A narrow table of its own for the lexical arm. The chunk rows carry the
-- embedding (and the text) inline, so a lexical search that reads every
-- allowed chunk holding a common term (every ticket id yields its prefix as a
-- term) read wide rows; this table holds only what BM25 needs, under its own
-- GIN index on the terms and a btree on (tenant, project), so a search reads
-- a few narrow pages per thousand chunks.
--
-- Statement triggers on the chunk table keep it in step, in the writing
-- transaction, whatever writes the chunks: this binary's upserts (DELETE, then
-- COPY), moves (UPDATE of project), deletes (cascaded from the ticket row),
-- the lexical backfill (UPDATE of the lex columns), and an older binary during
-- a rolling upgrade, which knows nothing of this table. Chunks without tokens
-- (lex_len IS NULL) get no row here until the backfill fills them.
--
-- The chunk table's own GIN index on lex_terms goes: nothing of this binary
-- reads it, and every write paid for it. An older binary still running a
-- lexical search during the upgrade scans instead (slower, same answer).
-- Never edit this file: append a new migration.
CREATE TABLE IF NOT EXISTS clearance_vector_lexical (
  ticket_id text COLLATE "C" NOT NULL,
  ordinal int NOT NULL,
  tenant text NOT NULL,
  project text NOT NULL,
  terms text[] COLLATE "C" NOT NULL,
  tfs real[] NOT NULL,
  len real NOT NULL,
  PRIMARY KEY (ticket_id, ordinal)
);

CREATE OR REPLACE FUNCTION clearance_vector_lexical_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO clearance_vector_lexical (ticket_id, ordinal, tenant, project, terms, tfs, len)
  SELECT n.ticket_id, n.ordinal, n.tenant, n.project, n.lex_terms, n.lex_tfs, n.lex_len
  FROM clearance_vector_lexical_new n WHERE n.lex_len IS NOT NULL
  ON CONFLICT (ticket_id, ordinal) DO UPDATE SET tenant = EXCLUDED.tenant, project = EXCLUDED.project,
    terms = EXCLUDED.terms, tfs = EXCLUDED.tfs, len = EXCLUDED.len;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION clearance_vector_lexical_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM clearance_vector_lexical l USING clearance_vector_lexical_old o
  WHERE l.ticket_id = o.ticket_id AND l.ordinal = o.ordinal;
  RETURN NULL;
END $$;

-- An update replaces the old rows' entries by the new rows' (a move changes
-- the project; the backfill sets the tokens).
CREATE OR REPLACE FUNCTION clearance_vector_lexical_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM clearance_vector_lexical l USING clearance_vector_lexical_old o
  WHERE l.ticket_id = o.ticket_id AND l.ordinal = o.ordinal;
  INSERT INTO clearance_vector_lexical (ticket_id, ordinal, tenant, project, terms, tfs, len)
  SELECT n.ticket_id, n.ordinal, n.tenant, n.project, n.lex_terms, n.lex_tfs, n.lex_len
  FROM clearance_vector_lexical_new n WHERE n.lex_len IS NOT NULL
  ON CONFLICT (ticket_id, ordinal) DO UPDATE SET tenant = EXCLUDED.tenant, project = EXCLUDED.project,
    terms = EXCLUDED.terms, tfs = EXCLUDED.tfs, len = EXCLUDED.len;
  RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS clearance_vector_lexical_insert ON clearance_vector_chunks;
CREATE TRIGGER clearance_vector_lexical_insert AFTER INSERT ON clearance_vector_chunks
  REFERENCING NEW TABLE AS clearance_vector_lexical_new
  FOR EACH STATEMENT EXECUTE FUNCTION clearance_vector_lexical_insert();
DROP TRIGGER IF EXISTS clearance_vector_lexical_delete ON clearance_vector_chunks;
CREATE TRIGGER clearance_vector_lexical_delete AFTER DELETE ON clearance_vector_chunks
  REFERENCING OLD TABLE AS clearance_vector_lexical_old
  FOR EACH STATEMENT EXECUTE FUNCTION clearance_vector_lexical_delete();
DROP TRIGGER IF EXISTS clearance_vector_lexical_update ON clearance_vector_chunks;
CREATE TRIGGER clearance_vector_lexical_update AFTER UPDATE ON clearance_vector_chunks
  REFERENCING OLD TABLE AS clearance_vector_lexical_old NEW TABLE AS clearance_vector_lexical_new
  FOR EACH STATEMENT EXECUTE FUNCTION clearance_vector_lexical_update();

-- The triggers hold a lock that keeps writers out until this step commits, so
-- the copy below misses nothing written before it and nothing after it is lost.
INSERT INTO clearance_vector_lexical (ticket_id, ordinal, tenant, project, terms, tfs, len)
SELECT ticket_id, ordinal, tenant, project, lex_terms, lex_tfs, lex_len
FROM clearance_vector_chunks WHERE lex_len IS NOT NULL
ON CONFLICT (ticket_id, ordinal) DO NOTHING;

CREATE INDEX IF NOT EXISTS clearance_vector_lexical_terms ON clearance_vector_lexical USING gin (terms);
CREATE INDEX IF NOT EXISTS clearance_vector_lexical_tenant_project ON clearance_vector_lexical (tenant, project);
DROP INDEX IF EXISTS clearance_vector_chunks_lex_terms;
