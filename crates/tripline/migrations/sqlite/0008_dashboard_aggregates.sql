-- Tripline's SQLite schema, version 8: counts for the dashboard, Users and Data
-- Connections, kept by an aggregator that reads new file events by `seq` after they
-- are stored (never in the ingest commit), its position saved in the same transaction
-- as its counts. (No index is added to file_events: each costs ingest speed.)

CREATE TABLE agg_position (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);
INSERT INTO agg_position (id, last_seq) VALUES (1, 0);

CREATE TABLE agg_hourly (
    hour          INTEGER NOT NULL,   -- epoch ms of the hour's start (UTC)
    connection_id TEXT NOT NULL,
    destination   TEXT NOT NULL,
    severity      TEXT NOT NULL,
    downloads     INTEGER NOT NULL,
    rows          INTEGER NOT NULL,
    PRIMARY KEY (hour, connection_id, destination, severity)
) WITHOUT ROWID;

CREATE TABLE agg_user_hourly (
    hour      INTEGER NOT NULL,
    user_id   TEXT NOT NULL,
    username  TEXT,
    downloads INTEGER NOT NULL,
    rows      INTEGER NOT NULL,
    PRIMARY KEY (hour, user_id)
) WITHOUT ROWID;

CREATE TABLE agg_report_hourly (
    hour        INTEGER NOT NULL,
    report      TEXT NOT NULL,        -- the report id, else its name
    report_name TEXT,
    downloads   INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    PRIMARY KEY (hour, report)
) WITHOUT ROWID;

-- The same per day (`hour` is the day's start): long ranges add up fewer rows.
CREATE TABLE agg_user_daily (
    hour      INTEGER NOT NULL,
    user_id   TEXT NOT NULL,
    username  TEXT,
    downloads INTEGER NOT NULL,
    rows      INTEGER NOT NULL,
    PRIMARY KEY (hour, user_id)
) WITHOUT ROWID;

CREATE TABLE agg_report_daily (
    hour        INTEGER NOT NULL,     -- the day's start
    report      TEXT NOT NULL,        -- the report id, else its name
    report_name TEXT,
    downloads   INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    PRIMARY KEY (hour, report)
) WITHOUT ROWID;
CREATE INDEX agg_user_hourly_user ON agg_user_hourly (user_id, hour);

-- Each person's downloads of all time, for the Users list.
CREATE TABLE agg_users (
    user_id   TEXT PRIMARY KEY,
    username  TEXT,
    downloads INTEGER NOT NULL,
    rows      INTEGER NOT NULL,
    last_at   INTEGER NOT NULL,
    worst     INTEGER NOT NULL        -- the highest severity's rank (0 no risk .. 4 critical)
) WITHOUT ROWID;

-- A person's sessions, for their page.
CREATE INDEX sessions_user ON sessions (user_id, login_at);

-- Each connection's newest download, for Data Connections.
CREATE TABLE agg_connections (
    connection_id TEXT PRIMARY KEY,
    last_at       INTEGER NOT NULL
) WITHOUT ROWID;
