-- Reviewers as people come and go, PostgreSQL flavour. Kept in step with
-- migrations/sqlite/0007_reviewer_admin.sql. Never edit once landed.

-- API tokens expire, remember when they were last used (to the minute),
-- and are revoked rather than deleted, so that `refundd reviewer token
-- --list` still shows what a token did after it stopped working.
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE api_tokens ADD COLUMN last_used_at TIMESTAMPTZ;
ALTER TABLE api_tokens ADD COLUMN revoked_at TIMESTAMPTZ;
-- Tokens issued before tokens expired get the default lifetime, 90 days
-- from their issue; from now on every token has an expiry.
UPDATE api_tokens SET expires_at = created_at + INTERVAL '90 days';
ALTER TABLE api_tokens ALTER COLUMN expires_at SET NOT NULL;
-- Disabling a reviewer revokes their tokens and ends their sessions.
CREATE INDEX api_tokens_reviewer ON api_tokens (reviewer_id);
CREATE INDEX reviewer_sessions_reviewer ON reviewer_sessions (reviewer_id);

-- When a reviewer last signed in, for `refundd reviewer list`; written in
-- the transaction that opens the session.
ALTER TABLE reviewers ADD COLUMN last_login_at TIMESTAMPTZ;
