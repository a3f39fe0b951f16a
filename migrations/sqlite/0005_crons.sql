-- Cron builds: a repository's branch built on a schedule (Travis's cron
-- jobs), one schedule per branch. `anchor_at` is when the schedule counts
-- from; `next_run_at` is the next run, moved by whichever server takes it
-- (a compare-and-set on it, so two servers never run it twice).
CREATE TABLE crons (
    id                INTEGER PRIMARY KEY,
    repo_id           BIGINT NOT NULL REFERENCES repos (id),
    branch            TEXT NOT NULL,
    frequency         TEXT NOT NULL,
    skip_if_recent    BIGINT NOT NULL,
    anchor_at         BIGINT NOT NULL,
    next_run_at       BIGINT NOT NULL,
    last_run_at       BIGINT,
    last_result       TEXT,
    last_build_id     BIGINT,
    created_at        BIGINT NOT NULL,
    UNIQUE (repo_id, branch)
);
CREATE INDEX crons_next_run_at ON crons (next_run_at);
