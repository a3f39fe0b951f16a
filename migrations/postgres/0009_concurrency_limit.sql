-- Travis's "Limit concurrent jobs": at most this many of the repository's
-- jobs run at once (NULL: no limit); the rest wait queued, in order.
ALTER TABLE repos ADD COLUMN max_concurrent_jobs BIGINT;
