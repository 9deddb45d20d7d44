-- +goose Up
-- Sessions of the /audit page, shared by every replica: a sign-in on one is
-- valid on all, a sign-out ends it on all. The cookie value is never stored,
-- only its SHA-256, so a read of this table yields no usable session.
CREATE TABLE clearance_audit_sessions (
	id_hash    bytea PRIMARY KEY,
	principal  jsonb NOT NULL,
	csrf       text NOT NULL,
	expires_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clearance_audit_sessions_expires ON clearance_audit_sessions (expires_at);
