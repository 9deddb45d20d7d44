-- The pgvector store's tables. They were created by the store's own migration
-- steps 1 and 2 (recorded in clearance_vector_migrations) before the schema
-- moved to this path; IF NOT EXISTS keeps this step a no-op on such a database.
-- {{dim}} is the embedding dimension of the first store opened on the database.
-- Never edit this file: append a new migration.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS clearance_vector_meta (
  singleton bool PRIMARY KEY DEFAULT true CHECK (singleton),
  model text NOT NULL,
  dim int NOT NULL
);
CREATE TABLE IF NOT EXISTS clearance_vector_tickets (
  id text COLLATE "C" PRIMARY KEY,
  tenant text NOT NULL,
  project text NOT NULL,
  title text NOT NULL,
  body text NOT NULL,
  updated_at timestamptz NOT NULL,
  content_hash text NOT NULL,
  chunks int NOT NULL
);
CREATE TABLE IF NOT EXISTS clearance_vector_chunks (
  ticket_id text COLLATE "C" NOT NULL REFERENCES clearance_vector_tickets (id) ON DELETE CASCADE,
  ordinal int NOT NULL,
  tenant text NOT NULL,
  project text NOT NULL,
  text text NOT NULL,
  embedding vector({{dim}}) NOT NULL,
  PRIMARY KEY (ticket_id, ordinal)
);
CREATE INDEX IF NOT EXISTS clearance_vector_chunks_tenant_project ON clearance_vector_chunks (tenant, project);
CREATE INDEX IF NOT EXISTS clearance_vector_chunks_embedding_hnsw ON clearance_vector_chunks USING hnsw (embedding vector_ip_ops);
-- The search planner counts allowed chunks from the narrow tickets table.
CREATE INDEX IF NOT EXISTS clearance_vector_tickets_tenant_project ON clearance_vector_tickets (tenant, project);
-- Builds from before this path read clearance_vector_migrations and refuse a
-- version they do not know: version 3 makes them stop instead of writing to a
-- schema they no longer own.
CREATE TABLE IF NOT EXISTS clearance_vector_migrations (
  version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO clearance_vector_migrations (version) VALUES (3) ON CONFLICT DO NOTHING;
