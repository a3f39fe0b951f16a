-- A pull request's base commit (the base branch's head when GitHub sent the
-- event): its jobs test the merge of the pull request into it, as Travis
-- tests GitHub's merge ref, and every job of the build merges into the same
-- commit, restarted ones too.
ALTER TABLE builds ADD COLUMN base_commit TEXT;
