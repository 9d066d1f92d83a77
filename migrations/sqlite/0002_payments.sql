-- refundd schema 0002, SQLite flavour: the payment stage (act::payments)
-- and the Polar webhook inbox (act::webhooks). Kept in step with
-- migrations/postgres/0002_payments.sql. Never edit once landed.

-- One row per cash_refund action the payment stage has taken up: where the
-- refund stands at Polar. The action row (0001) keeps its coarse status
-- (`pending` until this row reaches an end state, then `done`, `failed` or
-- `dry_run`); this row says why, and holds Polar's refund id.
--   in_flight  claimed by a pass; never committed on its own (the pass
--              holds the row until it records an end state or `unclear`)
--   unclear    the POST's outcome is unknown (timeout, 5xx, lost
--              response): the next pass looks it up by our key first
--   accepted   Polar took the refund (`polar_status` pending/succeeded)
--   refused    Polar refused it (a typed error), or it failed at Polar
--   review     a check or guard rail sent the case to a person, unpaid
--   dry_run    recorded what would have been refunded; nothing posted
CREATE TABLE payments (
    action_id       INTEGER PRIMARY KEY REFERENCES actions (id),
    case_id         INTEGER NOT NULL REFERENCES cases (id),
    idempotency_key TEXT NOT NULL UNIQUE,     -- the action's; sent as metadata.refundd_key
    order_id        TEXT NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount >= 0), -- minor units excl. tax
    currency        TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN
                        ('in_flight', 'unclear', 'accepted', 'refused', 'review', 'dry_run')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0), -- POSTs sent
    polar_refund_id TEXT UNIQUE,
    polar_status    TEXT,                     -- pending, succeeded, failed, canceled (Polar's word)
    detail          TEXT,                     -- why, in words
    posted_at       TEXT,                     -- when Polar accepted it: the daily total counts by it
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
-- One refund in flight per order: a second action on the same order waits
-- (PostgreSQL) or is skipped until the first one is settled either way.
CREATE UNIQUE INDEX payments_one_open_per_order ON payments (order_id)
    WHERE state IN ('in_flight', 'unclear');
-- The daily total of automatic refunds.
CREATE INDEX payments_posted ON payments (posted_at) WHERE state = 'accepted';

-- Replies held back until the payment stage knows how the refund went. The
-- pipeline stores two per cash-refund case: the `approved` reply ("your
-- refund is on its way") and a `review` fallback ("a person will look").
-- The stage moves one of them into `replies` (queued) and drops the other.
CREATE TABLE held_replies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id     INTEGER NOT NULL REFERENCES cases (id),
    role        TEXT NOT NULL CHECK (role IN ('approved', 'review')),
    message_id  TEXT NOT NULL UNIQUE,         -- our Message-ID, without <>
    to_addr     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    raw         BLOB NOT NULL,
    state       TEXT NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'released', 'dropped')),
    reply_id    INTEGER REFERENCES replies (id), -- once released
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX held_replies_case ON held_replies (case_id, id) WHERE state = 'held';

-- Refunds in the ledger now say how far they got. Imported rows are money
-- already returned (`succeeded`); a refund refundd or Polar made is
-- `pending` until Polar says it succeeded. Failed or canceled refunds are
-- removed: they returned nothing.
ALTER TABLE refunds ADD COLUMN status TEXT NOT NULL DEFAULT 'succeeded'
    CHECK (status IN ('pending', 'succeeded'));

-- Polar webhook deliveries, stored before they are answered (202) and
-- applied by a task afterwards. `webhook_id` is stable across Polar's
-- retries: a replayed delivery is the same row and is applied once.
CREATE TABLE webhook_deliveries (
    webhook_id  TEXT PRIMARY KEY,
    event_type  TEXT NOT NULL,                -- the body's `type`, or '' when unreadable
    body        BLOB NOT NULL,
    received_at TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'received'
                    CHECK (state IN ('received', 'applied', 'skipped', 'failed')),
    detail      TEXT,                         -- why skipped or failed
    applied_at  TEXT
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at)
    WHERE state = 'received';
