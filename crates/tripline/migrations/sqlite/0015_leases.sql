-- Nodes and leases (issue 12): which node runs each connection and each shared duty.
CREATE TABLE leases (
    key         TEXT PRIMARY KEY,        -- a connection id, or duty:...
    node        TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    token       INTEGER NOT NULL,        -- the fencing token: raised at each takeover
    expires_at  INTEGER NOT NULL,
    restart     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE nodes (
    name         TEXT PRIMARY KEY,
    incarnation  TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    address      TEXT
);
