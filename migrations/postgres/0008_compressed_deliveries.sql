-- Payloads are stored zstd-compressed in `body`, about a fifth of their
-- size: a burst of webhooks writes (and fsyncs) that much less before it is
-- acknowledged, and the journal takes that much less disk. `payload` keeps
-- the text of deliveries stored before this migration.
-- SQLite cannot drop a NOT NULL, so the table is built again (on both
-- engines: their migrations stay twins).
CREATE TABLE deliveries_compressed (
    id           TEXT PRIMARY KEY,
    event        TEXT NOT NULL,
    payload      TEXT,
    body         BYTEA,
    received_at  BIGINT NOT NULL,
    processed_at BIGINT,
    lease_until  BIGINT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    outcome      TEXT,
    CHECK (payload IS NOT NULL OR body IS NOT NULL)
);
INSERT INTO deliveries_compressed (id, event, payload, received_at, processed_at, lease_until, attempts, outcome)
    SELECT id, event, payload, received_at, processed_at, lease_until, attempts, outcome FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_compressed RENAME TO deliveries;
CREATE INDEX deliveries_pending ON deliveries (received_at) WHERE processed_at IS NULL;
