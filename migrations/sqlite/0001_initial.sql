-- Gantry's schema (SQLite). Times are Unix milliseconds; booleans are 0/1.
CREATE TABLE repos (
    id                INTEGER PRIMARY KEY,
    full_name         TEXT NOT NULL UNIQUE,
    clone_url         TEXT NOT NULL,
    private           BIGINT NOT NULL,
    default_branch    TEXT NOT NULL,
    last_build_number BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL
);

-- Webhook deliveries, stored before GitHub gets its 2xx: nothing acknowledged is lost.
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    event        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    processed_at BIGINT,
    lease_until  BIGINT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    outcome      TEXT
);
CREATE INDEX deliveries_pending ON deliveries (received_at) WHERE processed_at IS NULL;

CREATE TABLE builds (
    id           INTEGER PRIMARY KEY,
    repo_id      BIGINT NOT NULL REFERENCES repos (id),
    number       BIGINT NOT NULL,
    state        TEXT NOT NULL,
    event        TEXT NOT NULL,
    branch       TEXT NOT NULL,
    tag          TEXT,
    commit_sha   TEXT NOT NULL,
    message      TEXT NOT NULL,
    author       TEXT NOT NULL,
    sender       TEXT NOT NULL,
    pull_request BIGINT,
    head_branch  TEXT,
    head_repo    TEXT,
    fork         BIGINT NOT NULL,
    delivery_id  TEXT UNIQUE,
    reason       TEXT,
    diagnostics  TEXT NOT NULL DEFAULT '[]',
    fast_finish  BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    started_at   BIGINT,
    finished_at  BIGINT,
    UNIQUE (repo_id, number)
);
CREATE INDEX builds_repo ON builds (repo_id, number);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    build_id         BIGINT NOT NULL REFERENCES builds (id),
    number           BIGINT NOT NULL,
    name             TEXT NOT NULL,
    stage            TEXT NOT NULL,
    stage_index      BIGINT NOT NULL,
    state            TEXT NOT NULL,
    allow_failure    BIGINT NOT NULL,
    image            TEXT NOT NULL,
    spec             TEXT NOT NULL,
    runner           TEXT,
    lease            TEXT,
    lease_expires_at BIGINT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    exit_code        BIGINT,
    reason           TEXT,
    phases           TEXT NOT NULL DEFAULT '[]',
    created_at       BIGINT NOT NULL,
    queued_at        BIGINT,
    started_at       BIGINT,
    finished_at      BIGINT
);
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_build ON jobs (build_id, number);
