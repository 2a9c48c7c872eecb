-- Tripline's SQLite schema, version 10: watch lists, alert rules, alerts, notification
-- channels and their outbox. (Risk settings are the `risk` row of `settings`.)

CREATE TABLE watchlist (
    kind      TEXT NOT NULL,              -- departing | high-risk | contractor
    username  TEXT NOT NULL,              -- lower case
    departure TEXT,                       -- YYYY-MM-DD (departing employees)
    note      TEXT,
    added_at  INTEGER NOT NULL,
    added_by  TEXT NOT NULL,
    PRIMARY KEY (kind, username)
) WITHOUT ROWID;

CREATE TABLE rules (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE COLLATE NOCASE,
    definition      TEXT NOT NULL,        -- JSON: description, severity, conditions, channels, suppression
    enabled         INTEGER NOT NULL,
    active_from_seq INTEGER NOT NULL,     -- applies to file events stored after this one
    updated_at      INTEGER NOT NULL,
    updated_by      TEXT NOT NULL
);

CREATE TABLE alerts (
    ord           INTEGER PRIMARY KEY AUTOINCREMENT, -- creation order (for --checkpoint)
    id            TEXT NOT NULL UNIQUE,   -- derived from rule, user and first event
    rule_id       INTEGER NOT NULL,
    rule_name     TEXT NOT NULL,
    severity      TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    username      TEXT,
    state         TEXT NOT NULL,          -- open | in-progress | true-positive | benign | false-positive
    assignee      TEXT,
    first_at      INTEGER NOT NULL,
    last_at       INTEGER NOT NULL,
    events        INTEGER NOT NULL,
    rows          INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX alerts_created ON alerts (created_at);
CREATE INDEX alerts_open ON alerts (state, last_at);

-- The file events behind each alert: one row per alert and evaluator transaction,
-- holding the `seq`s it added (a JSON array), keyed by the alert's `ord` and the first
-- of them. Far fewer rows than one per contribution, which catch-up could not afford.
CREATE TABLE alert_event_blocks (
    alert     INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    seqs      TEXT NOT NULL,
    PRIMARY KEY (alert, first_seq)
) WITHOUT ROWID;

-- The high and critical file events some alert holds (for "risks not covered"),
-- appended in `seq` order.
CREATE TABLE alerted_events (
    event_seq INTEGER PRIMARY KEY
);

CREATE TABLE alert_notes (
    alert_id TEXT NOT NULL,
    at       INTEGER NOT NULL,
    author   TEXT NOT NULL,
    text     TEXT NOT NULL
);
CREATE INDEX alert_notes_alert ON alert_notes (alert_id, at);

-- The evaluator's position: the last file event (seq) it evaluated, saved with the
-- alerts it raised.
CREATE TABLE alert_position (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);
INSERT INTO alert_position (id, last_seq) VALUES (1, 0);

CREATE TABLE channels (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    kind       TEXT NOT NULL,             -- webhook | email | syslog
    target     TEXT NOT NULL,             -- sealed JSON (holds secrets)
    enabled    INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- The outbox: one row per (alert, channel), written in the same transaction as the
-- alert; delivered at least once, retried with backoff.
CREATE TABLE deliveries (
    id           INTEGER PRIMARY KEY,
    alert_id     TEXT NOT NULL,
    channel_id   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    delivered_at INTEGER,
    failed_at    INTEGER,                 -- given up after the last retry
    last_error   TEXT,
    last_error_at INTEGER,
    UNIQUE (alert_id, channel_id)
);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX deliveries_channel ON deliveries (channel_id, created_at);
