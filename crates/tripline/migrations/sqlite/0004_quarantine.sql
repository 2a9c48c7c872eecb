-- Tripline's SQLite schema, version 4: events that could not be read are kept aside,
-- with the reason, in the transaction that moves their stream's checkpoint past them.

CREATE TABLE quarantine (
    connection_id TEXT NOT NULL,
    topic         TEXT NOT NULL,
    key           TEXT NOT NULL,       -- a digest of what was received: replays add nothing
    received_at   INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    evidence      TEXT NOT NULL,       -- JSON: the fields, or the undecodable payload in base64
    PRIMARY KEY (connection_id, key)
) WITHOUT ROWID;
CREATE INDEX quarantine_time ON quarantine (connection_id, received_at);
