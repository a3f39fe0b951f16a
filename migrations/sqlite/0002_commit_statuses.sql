-- Commit statuses waiting to be sent to GitHub (an outbox: a status that
-- cannot be sent now is retried later, and never holds up a build).
CREATE TABLE commit_statuses (
    id              INTEGER PRIMARY KEY,
    build_id        BIGINT NOT NULL REFERENCES builds (id),
    repo            TEXT NOT NULL,
    sha             TEXT NOT NULL,
    context         TEXT NOT NULL,
    state           TEXT NOT NULL,
    description     TEXT NOT NULL,
    target_url      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT
);
CREATE INDEX commit_statuses_pending ON commit_statuses (next_attempt_at, id) WHERE sent_at IS NULL;
