-- "New source IP for this user" asks, per export from an address not yet seen in
-- memory, whether the user exported from it before. Through (user_id, observed_at)
-- that read every stored export of the user (a heavy exporter: thousands of rows, each
-- with its evidence) and took a tenth of catch-up's time (measured); this answers it
-- with one probe.
CREATE INDEX file_events_user_source ON file_events (user_id, source_ip);
