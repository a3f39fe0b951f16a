-- Email notifications (Travis's `notifications: email:`). A build keeps its
-- email settings (JSON, their `if:` already decided) and the commit's author
-- and committer addresses, whom Travis emails when no `recipients` are
-- written. Emails go through the notifications outbox, one row per
-- recipient, beside the webhooks: `kind` tells them apart.
ALTER TABLE builds ADD COLUMN email TEXT;
ALTER TABLE builds ADD COLUMN author_email TEXT;
ALTER TABLE builds ADD COLUMN committer_email TEXT;
ALTER TABLE notifications ADD COLUMN kind TEXT NOT NULL DEFAULT 'webhook';
