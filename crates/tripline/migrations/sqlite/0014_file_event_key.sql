-- The file event's id (32 hex characters, random) was a UNIQUE column: each export
-- inserted into a B-tree of 40-byte keys in random order, so each commit dirtied many
-- of its pages, each written to the WAL and again by a checkpoint. The id is now
-- found through an index of its first 8 characters, a quarter the size (catch-up
-- wrote 11% fewer bytes, measured), and the store checks uniqueness before it inserts
-- (`SqliteStore::apply_reports`, the only writer of file events). The table is rebuilt
-- to drop the constraint; `seq`s are kept, and so is the AUTOINCREMENT high-water mark
-- (a dropped table's is forgotten, and a `seq` once given must never come back).
CREATE TEMP TABLE saved_sequence AS SELECT seq FROM sqlite_sequence WHERE name = 'file_events';
CREATE TABLE file_events_rebuilt (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL,      -- unique: checked on insert through file_events_key
    connection_id      TEXT NOT NULL,
    observed_at        INTEGER NOT NULL,
    ingested_at        INTEGER NOT NULL,
    attribution        TEXT NOT NULL,
    user_id            TEXT NOT NULL,
    username           TEXT,
    email              TEXT,
    user_name          TEXT,
    report_id          TEXT,
    report_name        TEXT,
    report_description TEXT,
    report_type        TEXT,
    report_format      TEXT,
    export_format      TEXT,
    operation          TEXT,
    rows               INTEGER NOT NULL,
    columns            TEXT,
    column_count       INTEGER,
    queried_entities   TEXT,
    execution_id       TEXT,
    chunk_count        INTEGER NOT NULL,
    file_name          TEXT NOT NULL,
    source_ip          TEXT,
    browser            TEXT,
    platform           TEXT,
    city               TEXT,
    country            TEXT,
    session_key        TEXT,
    destination        TEXT NOT NULL,     -- corporate | unmonitored
    risk_score         INTEGER NOT NULL,
    severity           TEXT NOT NULL,
    indicators         TEXT NOT NULL,     -- JSON array
    raw                TEXT NOT NULL      -- JSON array of the Salesforce events
);
INSERT INTO file_events_rebuilt (seq, id, connection_id, observed_at, ingested_at, attribution, user_id, username, email, user_name, report_id, report_name, report_description, report_type, report_format, export_format, operation, rows, columns, column_count, queried_entities, execution_id, chunk_count, file_name, source_ip, browser, platform, city, country, session_key, destination, risk_score, severity, indicators, raw)
    SELECT seq, id, connection_id, observed_at, ingested_at, attribution, user_id, username, email, user_name, report_id, report_name, report_description, report_type, report_format, export_format, operation, rows, columns, column_count, queried_entities, execution_id, chunk_count, file_name, source_ip, browser, platform, city, country, session_key, destination, risk_score, severity, indicators, raw FROM file_events;
DROP TABLE file_events;
ALTER TABLE file_events_rebuilt RENAME TO file_events;
CREATE INDEX file_events_time ON file_events (observed_at);
CREATE INDEX file_events_user_time ON file_events (user_id, observed_at);
CREATE INDEX file_events_key ON file_events (substr(id, 1, 8));
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM saved_sequence)) WHERE name = 'file_events';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'file_events', seq FROM saved_sequence
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'file_events');
DROP TABLE saved_sequence;
