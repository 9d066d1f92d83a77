-- Keeping the reply promise (issue 7), SQLite flavour. Kept in step with
-- migrations/postgres/0004_deadlines.sql. Never edit once landed.

-- A case nearing or past its reply deadline, recorded once per case, kind
-- and deadline: a sweep that runs again finds the row and says nothing
-- more; a case whose deadline moves (the customer wrote again) can be
-- escalated again for the new one. The console's badge is "an alert for
-- the case's current deadline".
CREATE TABLE deadline_alerts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id           INTEGER NOT NULL REFERENCES cases (id),
    kind              TEXT NOT NULL CHECK (kind IN ('nearing', 'breached')),
    deadline          TEXT NOT NULL,          -- the deadline the alert is about
    at                TEXT NOT NULL,          -- when the sweep noticed
    digest_message_id TEXT,                   -- the team digest that named it, if mailed
    UNIQUE (case_id, kind, deadline)
);
CREATE INDEX deadline_alerts_case ON deadline_alerts (case_id, id);

-- Reports count by time range.
CREATE INDEX cases_created ON cases (created_at);
CREATE INDEX case_events_at ON case_events (at);
