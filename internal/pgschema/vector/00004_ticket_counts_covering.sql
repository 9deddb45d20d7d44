-- The search planner counts a filter's allowed chunks from the tickets table
-- before every search (retrieval/pgvector countUpTo). With exact ranking up to
-- 300,000 allowed chunks (issue 17) that count covers whole tenants: through
-- the (tenant, project) index it read every ticket row with its title and body
-- (53 ms for a 125,000-ticket tenant); with id and chunks in the index it is an
-- index-only scan (20 ms, 6 MB of index). This index replaces the narrower one.
-- Never edit this file: append a new migration.
CREATE INDEX IF NOT EXISTS clearance_vector_tickets_tenant_project_chunks
  ON clearance_vector_tickets (tenant, project) INCLUDE (id, chunks);
DROP INDEX IF EXISTS clearance_vector_tickets_tenant_project;
