-- The reviewers' console, SQLite flavour. Kept in step with
-- migrations/postgres/0003_console.sql: same tables, columns and CHECK
-- vocabularies; only the types differ. Never edit once landed.

-- A person who works the queue. The password is an argon2id PHC string,
-- never the password; the address is stored lowercased and is what
-- case events and the audit log name (`reviewer:{email}`).
CREATE TABLE reviewers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('reviewer', 'admin')),
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TEXT NOT NULL
);

-- A signed-in browser. The cookie carries a random secret; only its
-- SHA-256 is stored, so a leaked table signs nobody in. Each session has
-- its own CSRF token, echoed by every form.
CREATE TABLE reviewer_sessions (
    id_hash     TEXT PRIMARY KEY,
    reviewer_id INTEGER NOT NULL REFERENCES reviewers (id),
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX reviewer_sessions_expiry ON reviewer_sessions (expires_at);

-- Bearer tokens for /api, per reviewer, stored as SHA-256 only.
CREATE TABLE api_tokens (
    token_hash  TEXT PRIMARY KEY,
    reviewer_id INTEGER NOT NULL REFERENCES reviewers (id),
    label       TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);

-- Sign-in attempts, for rate limiting by address and by remote peer.
CREATE TABLE login_attempts (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    email   TEXT NOT NULL,
    remote  TEXT,
    success BOOLEAN NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX login_attempts_email ON login_attempts (email, at);
CREATE INDEX login_attempts_remote ON login_attempts (remote, at);

-- Who is working on an open case: at most one reviewer per case (the
-- primary key is the compare-and-set of claiming).
CREATE TABLE case_claims (
    case_id    INTEGER PRIMARY KEY REFERENCES cases (id),
    reviewer   TEXT NOT NULL,
    claimed_at TEXT NOT NULL
);
CREATE INDEX case_claims_reviewer ON case_claims (reviewer);

-- Every human act: who, when, what, on which case, and why. Written in
-- the same transaction as the change it records.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,                -- `reviewer:ann@x`, `cli`
    action  TEXT NOT NULL CHECK (action IN
                ('login', 'login_failed', 'logout', 'claim', 'release', 'approve', 'deny',
                 'ask', 'note', 'reviewer_added', 'token_created')),
    case_id INTEGER REFERENCES cases (id),
    detail  TEXT NOT NULL DEFAULT '{}'    -- JSON: amounts, reasons, the note
);
CREATE INDEX audit_log_case ON audit_log (case_id, id);

-- The queue lists open cases oldest deadline first; the partial index
-- keeps that walk to open cases only, however many are resolved.
CREATE INDEX cases_open_deadline ON cases (deadline, id) WHERE status IN ('review', 'needs_info');
-- The queue filtered by category, in the same order.
CREATE INDEX cases_open_category ON cases (category, deadline, id) WHERE status IN ('review', 'needs_info');
