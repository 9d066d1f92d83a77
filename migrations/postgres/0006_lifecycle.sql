-- The audit log learns the acts of the case lifecycle and of reviewer
-- administration: an admin taking over another reviewer's claim when
-- deciding, and reviewers disabled, enabled or losing a token.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN
    ('login', 'login_failed', 'logout', 'claim', 'release', 'approve', 'deny',
     'ask', 'note', 'reviewer_added', 'token_created', 'take_over',
     'reviewer_disabled', 'reviewer_enabled', 'token_revoked'));

-- "Left to refund" sums the cash refunds still pending for an order
-- across every case; this index keeps that sum to the order's own rows.
CREATE INDEX actions_order_status ON actions (order_id, status) WHERE kind = 'cash_refund';
