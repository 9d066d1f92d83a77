-- The audit log learns the acts of the case lifecycle and of reviewer
-- administration: an admin taking over another reviewer's claim when
-- deciding, and reviewers disabled, enabled or losing a token.
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt; nothing
-- references it.
CREATE TABLE audit_log_new (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,                -- `reviewer:ann@x`, `cli`
    action  TEXT NOT NULL CHECK (action IN
                ('login', 'login_failed', 'logout', 'claim', 'release', 'approve', 'deny',
                 'ask', 'note', 'reviewer_added', 'token_created', 'take_over',
                 'reviewer_disabled', 'reviewer_enabled', 'token_revoked')),
    case_id INTEGER REFERENCES cases (id),
    detail  TEXT NOT NULL DEFAULT '{}'    -- JSON: amounts, reasons, the note
);
INSERT INTO audit_log_new (id, at, actor, action, case_id, detail)
    SELECT id, at, actor, action, case_id, detail FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
CREATE INDEX audit_log_case ON audit_log (case_id, id);

-- "Left to refund" sums the cash refunds still pending for an order
-- across every case; this index keeps that sum to the order's own rows.
CREATE INDEX actions_order_status ON actions (order_id, status) WHERE kind = 'cash_refund';
