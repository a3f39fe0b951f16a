-- Slack notifications (Travis's `notifications: slack:`): the rooms a build
-- tells (JSON, their `if:` already decided). Their messages go through the
-- notifications outbox with `kind` 'slack', one row per room.
ALTER TABLE builds ADD COLUMN slack TEXT;
