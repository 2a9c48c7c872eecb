-- Nodes and leases: which node runs each connection and each shared duty.
CREATE TABLE leases (
    key         TEXT PRIMARY KEY,        -- a connection id, or duty:...
    node        TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    token       BIGINT NOT NULL,         -- the fencing token: raised at each takeover
    expires_at  BIGINT NOT NULL,         -- the database's clock, epoch ms
    restart     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE nodes (
    name         TEXT PRIMARY KEY,
    incarnation  TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    address      TEXT
);
