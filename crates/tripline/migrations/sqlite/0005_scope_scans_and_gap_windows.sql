-- Tripline's SQLite schema, version 5.

-- When the scope was last scanned: until a first scan succeeds the monitored users are
-- unknown, and exports wait for it instead of being judged against an empty scope.
ALTER TABLE connections ADD COLUMN scope_scanned_at INTEGER;
UPDATE connections SET scope_scanned_at = created_at
WHERE EXISTS (SELECT 1 FROM scope_users WHERE scope_users.connection_id = connections.id);

-- How far the periodic reconciliation with the stored ReportEvent object has come.
ALTER TABLE connections ADD COLUMN reconciled_to INTEGER;

-- A gap is one window, recorded once: later attempts update it (and clear it when the
-- window is recovered) instead of adding rows.
UPDATE gaps SET from_ms = detected_at WHERE from_ms IS NULL;
DELETE FROM gaps WHERE rowid NOT IN (SELECT MAX(rowid) FROM gaps GROUP BY connection_id, topic, from_ms);
CREATE UNIQUE INDEX gaps_window ON gaps (connection_id, topic, from_ms);
