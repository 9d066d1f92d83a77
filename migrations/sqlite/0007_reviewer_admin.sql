-- Reviewers as people come and go, SQLite flavour. Kept in step with
-- migrations/postgres/0007_reviewer_admin.sql. Never edit once landed.

-- API tokens expire, remember when they were last used (to the minute),
-- and are revoked rather than deleted, so that `refundd reviewer token
-- --list` still shows what a token did after it stopped working.
-- SQLite cannot add a NOT NULL column without a constant default, so
-- `expires_at` stays nullable here; the store always writes it, and a
-- token without one is treated as expired (fail closed).
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE api_tokens ADD COLUMN last_used_at TEXT;
ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;
-- Tokens issued before tokens expired get the default lifetime, 90 days
-- from their issue, written in the RFC 3339 form the store binds
-- (`…T…+00:00`), so that text comparison orders them with bound times.
UPDATE api_tokens
   SET expires_at = strftime('%Y-%m-%dT%H:%M:%S+00:00', created_at, '+90 days');
-- Disabling a reviewer revokes their tokens and ends their sessions.
CREATE INDEX api_tokens_reviewer ON api_tokens (reviewer_id);
CREATE INDEX reviewer_sessions_reviewer ON reviewer_sessions (reviewer_id);

-- When a reviewer last signed in, for `refundd reviewer list`; written in
-- the transaction that opens the session.
ALTER TABLE reviewers ADD COLUMN last_login_at TEXT;
