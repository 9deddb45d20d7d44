-- The lexical table in four hash partitions of ticket_id, each with its own
-- GIN index on doc. PostgreSQL 15 builds a GIN index in one process, so the
-- single index a bulk load rebuilt at its end kept one core busy while the
-- others idled (100k chunks: 5.8 s); four partition indexes are built by
-- concurrent sessions (retrieval/pgvector/bulk.go). Searches are unchanged:
-- they read the parent, which scans each partition through its own index.
-- There is deliberately no partitioned (parent) GIN index: its partition
-- indexes could not be dropped or built CONCURRENTLY one by one, which is what
-- bulk loads do (docs/decisions/pgvector-bulk-load.md).
--
-- The rows are copied under locks that keep the chunk table's writers (whose
-- triggers write this table) waiting until this step commits, so nothing is
-- lost or written twice; the trigger functions name the table and find the new
-- one. The GIN indexes are built here, in the same transaction, so a search
-- never finds them missing after the upgrade.
-- Never edit this file: append a new migration.
LOCK TABLE clearance_vector_chunks IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE clearance_vector_lexical IN ACCESS EXCLUSIVE MODE;
ALTER TABLE clearance_vector_lexical RENAME TO clearance_vector_lexical_v5;
ALTER INDEX clearance_vector_lexical_pkey RENAME TO clearance_vector_lexical_v5_pkey;
ALTER INDEX clearance_vector_lexical_tenant_project RENAME TO clearance_vector_lexical_v5_tenant_project;
ALTER INDEX IF EXISTS clearance_vector_lexical_doc RENAME TO clearance_vector_lexical_v5_doc;

CREATE TABLE clearance_vector_lexical (
  ticket_id text COLLATE "C" NOT NULL,
  ordinal int NOT NULL,
  tenant text NOT NULL,
  project text NOT NULL,
  doc jsonb NOT NULL,
  len real NOT NULL,
  PRIMARY KEY (ticket_id, ordinal)
) PARTITION BY HASH (ticket_id);
CREATE TABLE clearance_vector_lexical_p0 PARTITION OF clearance_vector_lexical FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE clearance_vector_lexical_p1 PARTITION OF clearance_vector_lexical FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE clearance_vector_lexical_p2 PARTITION OF clearance_vector_lexical FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE clearance_vector_lexical_p3 PARTITION OF clearance_vector_lexical FOR VALUES WITH (MODULUS 4, REMAINDER 3);
CREATE INDEX clearance_vector_lexical_tenant_project ON clearance_vector_lexical (tenant, project);

INSERT INTO clearance_vector_lexical (ticket_id, ordinal, tenant, project, doc, len)
SELECT ticket_id, ordinal, tenant, project, doc, len FROM clearance_vector_lexical_v5;
DROP TABLE clearance_vector_lexical_v5;

CREATE INDEX clearance_vector_lexical_p0_doc ON clearance_vector_lexical_p0 USING gin (doc);
CREATE INDEX clearance_vector_lexical_p1_doc ON clearance_vector_lexical_p1 USING gin (doc);
CREATE INDEX clearance_vector_lexical_p2_doc ON clearance_vector_lexical_p2 USING gin (doc);
CREATE INDEX clearance_vector_lexical_p3_doc ON clearance_vector_lexical_p3 USING gin (doc);
ANALYZE clearance_vector_lexical;
