-- Log retention (GANTRY_LOG_RETENTION_DAYS): when a finished job's log was
-- replaced by the line saying it expired. Jobs whose log is still kept are
-- found by when they finished, through the partial index.
ALTER TABLE jobs ADD COLUMN log_expired_at BIGINT;
CREATE INDEX jobs_logs_kept ON jobs (finished_at) WHERE log_expired_at IS NULL;
