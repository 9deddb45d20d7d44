-- Vectors inline in the heap rows (issue 17). Under the default EXTENDED
-- storage a 384-dim vector (1,544 bytes) plus the chunk's text passes the
-- 2 kB TOAST threshold and is moved out of line, so an exact scan of 250,000
-- allowed chunks fetched each vector through the TOAST index: 2.5 s serial,
-- 1.2 s with two parallel workers, where the same rows stored inline scan in
-- 0.56 s / 0.34 s (docs/benchmarks.md). PLAIN keeps every vector inline and
-- uncompressed (the text and lexical columns are toasted first); it needs the
-- row to fit in a page, so dimensions above 1,536 get MAIN (inline unless the
-- row cannot fit otherwise). Only rows written afterwards are stored so: an
-- existing table keeps its toasted vectors until rewritten (VACUUM FULL or
-- CLUSTER, docs/operations.md).
-- Never edit this file: append a new migration.
DO $$
BEGIN
  IF {{dim}} <= 1536 THEN
    ALTER TABLE clearance_vector_chunks ALTER COLUMN embedding SET STORAGE PLAIN;
  ELSE
    ALTER TABLE clearance_vector_chunks ALTER COLUMN embedding SET STORAGE MAIN;
  END IF;
END $$;
