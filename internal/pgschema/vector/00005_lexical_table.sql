-- A narrow table of its own for the lexical arm. The chunk rows carry the
-- embedding (and the text) inline, so a lexical search that reads every
-- allowed chunk holding a common term (every ticket id yields its prefix as a
-- term) read wide rows; this table holds only what BM25 needs, under its own
-- GIN index on the terms and a btree on (tenant, project), so a search reads
-- a few narrow pages per thousand chunks. A chunk's terms and frequencies are
-- one jsonb object (term -> frequency): finding a term in it is a binary
-- search of byte strings, where array_position on text[] called the collation
-- comparison once per element (most of a search's time). The frequencies are
-- written as text and read back with float8's input, exactly.
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
  doc jsonb NOT NULL,
  len real NOT NULL,
  PRIMARY KEY (ticket_id, ordinal)
);

-- The natural logarithm as retrieval/lexical.Ln computes it, operation for
-- operation in float8, so that IDFs computed in SQL equal the embedded
-- store's to the bit (PostgreSQL's ln is the C library's, which differs from
-- Go's in the last bit for about 7% of them). The constants are Go's float64
-- values, printed with 17 significant digits. Defined for normal positive x.
CREATE OR REPLACE FUNCTION clearance_ln(x float8) RETURNS float8
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  c CONSTANT float8 := 0.70710678118654757;
  ln2hi CONSTANT float8 := 0.69314718036912382;
  ln2lo CONSTANT float8 := 1.9082149292705877e-10;
  l1 CONSTANT float8 := 0.66666666666667351;
  l2 CONSTANT float8 := 0.39999999999409419;
  l3 CONSTANT float8 := 0.28571428743662391;
  l4 CONSTANT float8 := 0.22222198432149784;
  l5 CONSTANT float8 := 0.1818357216161805;
  l6 CONSTANT float8 := 0.15313837699209373;
  l7 CONSTANT float8 := 0.14798198605116586;
  f1 float8 := x;
  k float8 := 0;
  f float8; s float8; s2 float8; s4 float8; t1 float8; t2 float8; r float8; hfsq float8;
BEGIN
  IF NOT (x >= 2.2250738585072014e-308::float8) OR x = 'Infinity'::float8 THEN
    RAISE EXCEPTION 'clearance_ln: argument % outside the normal positive range', x;
  END IF;
  WHILE f1 >= 2::float8 * c LOOP
    f1 := f1 / 2::float8;
    k := k + 1::float8;
  END LOOP;
  WHILE f1 < c LOOP
    f1 := f1 * 2::float8;
    k := k - 1::float8;
  END LOOP;
  f := f1 - 1::float8;
  s := f / (2::float8 + f);
  s2 := s * s;
  s4 := s2 * s2;
  t1 := s2 * (l1 + s4 * (l3 + s4 * (l5 + s4 * l7)));
  t2 := s4 * (l2 + s4 * (l4 + s4 * l6));
  r := t1 + t2;
  hfsq := 0.5::float8 * f * f;
  RETURN k * ln2hi - ((hfsq - (s * (hfsq + r) + k * ln2lo)) - f);
END $$;

-- A chunk's lexical columns as the table's object: each frequency as its
-- shortest decimal text, which reads back as the same float exactly.
CREATE OR REPLACE FUNCTION clearance_lex_doc(terms text[], tfs real[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_object(terms, tfs::text[])
$$;

CREATE OR REPLACE FUNCTION clearance_vector_lexical_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO clearance_vector_lexical (ticket_id, ordinal, tenant, project, doc, len)
  SELECT n.ticket_id, n.ordinal, n.tenant, n.project, clearance_lex_doc(n.lex_terms, n.lex_tfs), n.lex_len
  FROM clearance_vector_lexical_new n WHERE n.lex_len IS NOT NULL
  ON CONFLICT (ticket_id, ordinal) DO UPDATE SET tenant = EXCLUDED.tenant, project = EXCLUDED.project,
    doc = EXCLUDED.doc, len = EXCLUDED.len;
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
  INSERT INTO clearance_vector_lexical (ticket_id, ordinal, tenant, project, doc, len)
  SELECT n.ticket_id, n.ordinal, n.tenant, n.project, clearance_lex_doc(n.lex_terms, n.lex_tfs), n.lex_len
  FROM clearance_vector_lexical_new n WHERE n.lex_len IS NOT NULL
  ON CONFLICT (ticket_id, ordinal) DO UPDATE SET tenant = EXCLUDED.tenant, project = EXCLUDED.project,
    doc = EXCLUDED.doc, len = EXCLUDED.len;
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
INSERT INTO clearance_vector_lexical (ticket_id, ordinal, tenant, project, doc, len)
SELECT ticket_id, ordinal, tenant, project, clearance_lex_doc(lex_terms, lex_tfs), lex_len
FROM clearance_vector_chunks WHERE lex_len IS NOT NULL
ON CONFLICT (ticket_id, ordinal) DO NOTHING;

CREATE INDEX IF NOT EXISTS clearance_vector_lexical_doc ON clearance_vector_lexical USING gin (doc);
CREATE INDEX IF NOT EXISTS clearance_vector_lexical_tenant_project ON clearance_vector_lexical (tenant, project);
DROP INDEX IF EXISTS clearance_vector_chunks_lex_terms;
