-- Tripline's SQLite schema, version 2.

-- One shape for a status detail: {"problems": [...], "since": ms}. Servers before
-- version 2 wrote a connection that could not start as {"kind", "source", "message"}.
UPDATE connections
SET status_detail = json_object(
    'problems', json_array(json_object(
        'severity', json_extract(status_detail, '$.kind'),
        'source', json_extract(status_detail, '$.source'),
        'message', json_extract(status_detail, '$.message'))),
    'since', created_at)
WHERE json_extract(status_detail, '$.kind') IS NOT NULL;

UPDATE status_history
SET detail = json_object(
    'problems', json_array(json_object(
        'severity', json_extract(detail, '$.kind'),
        'source', json_extract(detail, '$.source'),
        'message', json_extract(detail, '$.message'))),
    'since', at)
WHERE json_extract(detail, '$.kind') IS NOT NULL;

-- Attribution no longer looks users up one by one while ingesting: the scope scan's
-- record of each monitored user serves.
DROP TABLE user_cache;
