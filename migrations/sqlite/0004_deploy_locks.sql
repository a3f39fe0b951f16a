-- Who is deploying to an environment now. A row names the job that last
-- took the target; it holds it only while that job is running, so a
-- finished, canceled or lost job never leaves a deploy blocked.
CREATE TABLE deploy_locks (
    repo_id     BIGINT NOT NULL REFERENCES repos (id),
    target      TEXT NOT NULL,
    job_id      BIGINT NOT NULL REFERENCES jobs (id),
    acquired_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, target)
);
