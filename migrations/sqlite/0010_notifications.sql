-- Webhook notifications (Travis's `notifications: webhooks:`). A build keeps
-- the webhooks its pipeline file names (JSON, their `if:` already decided);
-- each start and finish queues one row per webhook in an outbox, sent by a
-- loop that retries with backoff, so a receiver that is down loses nothing
-- and never holds up a build.
ALTER TABLE builds ADD COLUMN webhooks TEXT;

CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    build_id        BIGINT NOT NULL REFERENCES builds (id),
    event           TEXT NOT NULL,
    -- The webhook's URL as written, or the secret it is read from (JSON).
    target          TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    response_status BIGINT,
    last_error      TEXT,
    finished_at     BIGINT
);
CREATE INDEX notifications_pending ON notifications (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX notifications_of_build ON notifications (build_id, id);

-- Keys the server signs with, made on first use (the webhook notification
-- key: receivers check a `Signature` against its public half at /api/config).
CREATE TABLE signing_keys (
    name        TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
