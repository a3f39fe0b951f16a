-- The config an API request (or the Trigger page) sent with a build, over
-- its pipeline file (JSON: its text and merge mode), so that restarting a
-- build that has no jobs plans it again with the same config.
ALTER TABLE builds ADD COLUMN request_config TEXT;
