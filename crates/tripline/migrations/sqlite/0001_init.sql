-- Tripline's SQLite schema, version 1.

CREATE TABLE connections (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL UNIQUE,
    org_id        TEXT NOT NULL,
    instance_url  TEXT NOT NULL,
    login_url     TEXT NOT NULL,
    scope_mode    TEXT NOT NULL,          -- all | users | groups
    scope_entries TEXT NOT NULL,          -- JSON array of what the CSV named
    corporate_cidrs TEXT NOT NULL,        -- JSON array
    refresh_token TEXT NOT NULL,
    access_token  TEXT NOT NULL,
    service_user_id TEXT NOT NULL,
    status        TEXT NOT NULL,          -- initializing | monitoring | error | paused | deauthorized
    status_detail TEXT,                   -- JSON: kind, source, message, since
    created_at    INTEGER NOT NULL
);

CREATE TABLE status_history (
    connection_id TEXT NOT NULL REFERENCES connections(id),
    at            INTEGER NOT NULL,
    status        TEXT NOT NULL,
    detail        TEXT,
    actor         TEXT NOT NULL
);

-- Replay position per topic; written in the same transaction as the events it covers.
CREATE TABLE checkpoints (
    connection_id TEXT NOT NULL,
    topic         TEXT NOT NULL,
    replay_id     BLOB NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (connection_id, topic)
);

-- Event identifiers of login, logout and out-of-scope events already applied, so that
-- replays are no-ops. (Exports are recognised by their file event's id and raw events.)
CREATE TABLE seen_events (
    connection_id    TEXT NOT NULL,
    event_identifier TEXT NOT NULL,
    PRIMARY KEY (connection_id, event_identifier)
) WITHOUT ROWID;

CREATE TABLE sessions (
    connection_id TEXT NOT NULL,
    session_key   TEXT NOT NULL,
    login_key     TEXT,
    user_id       TEXT NOT NULL,
    username      TEXT,
    source_ip     TEXT,
    browser       TEXT,
    platform      TEXT,
    city          TEXT,
    country       TEXT,
    login_at      INTEGER NOT NULL,
    logout_at     INTEGER,
    PRIMARY KEY (connection_id, session_key)
);

CREATE TABLE login_history (
    connection_id    TEXT NOT NULL,
    event_identifier TEXT NOT NULL,
    kind             TEXT NOT NULL,       -- login | logout
    user_id          TEXT NOT NULL,
    username         TEXT,
    source_ip        TEXT,
    status           TEXT,
    session_key      TEXT,
    at               INTEGER NOT NULL,
    PRIMARY KEY (connection_id, event_identifier)
);
CREATE INDEX login_history_user ON login_history (connection_id, user_id, at);

-- Users as looked up through the REST API (attribution of sessions we never saw).
CREATE TABLE user_cache (
    connection_id TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    username      TEXT,
    email         TEXT,
    name          TEXT,
    fetched_at    INTEGER NOT NULL,
    PRIMARY KEY (connection_id, user_id)
);

-- The monitored users as of the last scope scan.
CREATE TABLE scope_users (
    connection_id TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    username      TEXT NOT NULL,
    email         TEXT,
    name          TEXT,
    PRIMARY KEY (connection_id, user_id)
);

CREATE TABLE counters (
    connection_id TEXT NOT NULL,
    name          TEXT NOT NULL,
    value         INTEGER NOT NULL,
    PRIMARY KEY (connection_id, name)
);

-- Windows of events that could not be recovered.
CREATE TABLE gaps (
    connection_id TEXT NOT NULL,
    topic         TEXT NOT NULL,
    detected_at   INTEGER NOT NULL,
    from_ms       INTEGER,
    to_ms         INTEGER,
    reason        TEXT NOT NULL,
    recovered     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE file_events (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
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
CREATE INDEX file_events_time ON file_events (observed_at);
CREATE INDEX file_events_user_time ON file_events (user_id, observed_at);

-- Named positions for incremental pulls (`tripline search --checkpoint NAME`).
CREATE TABLE search_checkpoints (
    name     TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);

-- Everyone who has exported, by id: searches by username, email or name resolve to
-- user ids here (a small table) and then use the (user_id, observed_at) index.
CREATE TABLE known_users (
    user_id  TEXT PRIMARY KEY,
    username TEXT COLLATE NOCASE,
    email    TEXT COLLATE NOCASE,
    name     TEXT COLLATE NOCASE
);

-- API tokens: only a SHA-256 of each token is kept.
CREATE TABLE api_tokens (
    name       TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
