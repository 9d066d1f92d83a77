-- What the engine decided on each message, as it decided it: kept even
-- when a reviewer later changes the case, so that a replay can compare
-- (drift), shadow mode can measure agreement with people, and "why did
-- this case decide differently last month" has an answer (the
-- fingerprint of the deciding configuration and the refundd version).
CREATE TABLE engine_decisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  INTEGER NOT NULL REFERENCES messages (id),
    case_id     INTEGER NOT NULL REFERENCES cases (id),
    -- policy: decided from this message; case: from the case's messages
    -- merged (a follow-up to a question); screen: not the policy's (an
    -- unreadable or oversized message, a follow-up reopened for review).
    basis       TEXT NOT NULL CHECK (basis IN ('policy', 'case', 'screen')),
    decision    TEXT NOT NULL,                -- JSON, the whole Decision
    outcome     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,                -- of the deciding configuration
    version     TEXT NOT NULL,                -- refundd's
    shadow      BOOLEAN NOT NULL DEFAULT FALSE, -- a proposal only: the case waited for a person
    decided_at  TEXT NOT NULL
);
CREATE INDEX engine_decisions_case ON engine_decisions (case_id, id);
CREATE INDEX engine_decisions_message ON engine_decisions (message_id);

-- Shadow mode: each reviewer decision on a case the engine only proposed,
-- and whether the person decided what the engine proposed (outcome,
-- action, amount).
CREATE TABLE shadow_verdicts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id            INTEGER NOT NULL REFERENCES cases (id),
    engine_decision_id INTEGER NOT NULL REFERENCES engine_decisions (id),
    reviewer           TEXT NOT NULL,
    agree              BOOLEAN NOT NULL,
    at                 TEXT NOT NULL
);
CREATE INDEX shadow_verdicts_at ON shadow_verdicts (at);
