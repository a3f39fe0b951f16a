-- Travis's repository settings "Build pushed branches" and "Build pushed
-- pull requests": off, a push (or a pull request) builds nothing, and its
-- delivery says so. API and cron builds are not affected.
ALTER TABLE repos ADD COLUMN build_pushes BIGINT NOT NULL DEFAULT 1;
ALTER TABLE repos ADD COLUMN build_pull_requests BIGINT NOT NULL DEFAULT 1;
