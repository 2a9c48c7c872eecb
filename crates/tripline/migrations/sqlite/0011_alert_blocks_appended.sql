-- Alert event blocks in the order they are written. Keyed by (alert, first_seq) the
-- rows of a catch-up's ~1,000 alerts landed on as many scattered pages in every
-- evaluator transaction; appended, they fill pages one after the other, and the small
-- index finds an alert's blocks.
CREATE TABLE alert_event_blocks_appended (
    id        INTEGER PRIMARY KEY,
    alert     INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    seqs      TEXT NOT NULL,
    UNIQUE (alert, first_seq)
);
INSERT INTO alert_event_blocks_appended (alert, first_seq, seqs)
    SELECT alert, first_seq, seqs FROM alert_event_blocks ORDER BY alert, first_seq;
DROP TABLE alert_event_blocks;
ALTER TABLE alert_event_blocks_appended RENAME TO alert_event_blocks;
