-- Clearing a repository's build caches. Caches live on the runners, so the
-- server keeps only a count of clears: each job carries it, and a runner
-- drops the repository's caches kept under a smaller one.
ALTER TABLE repos ADD COLUMN cache_generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repos ADD COLUMN caches_cleared_at BIGINT;
