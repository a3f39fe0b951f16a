-- IRC notifications (Travis's `notifications: irc:`): the channels a build
-- tells (JSON, their `if:` already decided). Their messages go through the
-- notifications outbox with `kind` 'irc', one row per channel.
ALTER TABLE builds ADD COLUMN irc TEXT;
