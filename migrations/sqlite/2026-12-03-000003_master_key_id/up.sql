-- The id of the master key the sealed secrets are under (db::sealed): recorded at the first start
-- (after an upgrade: once the configured key is seen to open them), replaced by
-- `renewgate master-key rotate`. An instance holding another key refuses to start.
CREATE TABLE master_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key_id TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    rotated_at TIMESTAMP
);
