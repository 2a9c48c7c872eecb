-- Tripline's SQLite schema, version 9: installation settings set in the console
-- (Administration > Settings), one JSON value per name.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
