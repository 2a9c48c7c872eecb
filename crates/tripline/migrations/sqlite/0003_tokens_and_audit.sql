-- Tripline's SQLite schema, version 3: API tokens expire, are revoked and remember
-- their last use; an audit log of changes.

ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN revoked_at INTEGER;

CREATE TABLE audit_log (
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
