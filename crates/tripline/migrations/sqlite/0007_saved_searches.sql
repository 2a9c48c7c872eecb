-- Tripline's SQLite schema, version 7: Forensic Searches saved by name (shared by the
-- team), kept as the console's query string.

CREATE TABLE saved_searches (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    query      TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
