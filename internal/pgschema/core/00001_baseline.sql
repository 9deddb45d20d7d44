-- +goose Up
-- The tables clearance created with CREATE TABLE IF NOT EXISTS before its schema
-- was versioned (API keys, audit log, indexer watermarks). IF NOT EXISTS keeps
-- this step a no-op on such a database, so it upgrades in place. Never edit this
-- file: append a new migration.
CREATE TABLE IF NOT EXISTS clearance_api_keys (
	id text PRIMARY KEY,
	tenant text NOT NULL,
	service_account text NOT NULL,
	name text NOT NULL DEFAULT '',
	scopes text[] NOT NULL,
	salt bytea NOT NULL,
	hash bytea NOT NULL,
	created_at timestamptz NOT NULL,
	last_used_at timestamptz
);
CREATE INDEX IF NOT EXISTS clearance_api_keys_tenant ON clearance_api_keys (tenant, created_at);

CREATE TABLE IF NOT EXISTS audit_records (
	seq       bigint PRIMARY KEY,
	id        text NOT NULL UNIQUE,
	time      timestamptz NOT NULL,
	tenant    text NOT NULL,
	principal text NOT NULL,
	agent     text NOT NULL,
	tickets   text[] NOT NULL,
	record    text NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_tenant_id ON audit_records (tenant, id);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time);
CREATE INDEX IF NOT EXISTS audit_records_tickets ON audit_records USING gin (tickets);
CREATE TABLE IF NOT EXISTS audit_head (
	one  boolean PRIMARY KEY DEFAULT true CHECK (one),
	seq  bigint NOT NULL,
	id   text NOT NULL,
	hash text NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
	id         text PRIMARY KEY,
	checkpoint text NOT NULL
);

CREATE TABLE IF NOT EXISTS clearance_index_state (
	source     text PRIMARY KEY,
	watermark  text NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
