-- refundd schema, SQLite flavour. Kept in step with
-- migrations/postgres/0001_initial.sql: same tables, same columns, same
-- CHECK vocabularies; only the types differ (TEXT times, BLOB bytes,
-- TEXT JSON). Times are RFC 3339 text in UTC, which sorts as time.
-- Never edit this file once landed: add 0002_… instead.

-- ---------------------------------------------------------------------
-- Our own work: cases, the messages that form them, what we did, what we
-- answered. Rows reference each other with foreign keys.
-- ---------------------------------------------------------------------

-- A case: one customer request and everything decided about it. The tag
-- customers and reviewers see is `R-{id}`; AUTOINCREMENT so that a tag is
-- never reused, even after a delete.
CREATE TABLE cases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sender      TEXT NOT NULL,                -- lowercased From: address
    subject     TEXT NOT NULL,
    language    TEXT NOT NULL CHECK (language IN ('en', 'de', 'fr', 'es')),
    wallet_id   TEXT,                         -- once identified (ledger id)
    order_id    TEXT,                         -- once identified (Polar UUID)
    -- Copies of the decision's vocabulary fields, for filtering in SQL.
    outcome     TEXT NOT NULL CHECK (outcome IN
                    ('approved', 'denied', 'review', 'needs_info', 'answered', 'ignored')),
    category    TEXT NOT NULL CHECK (category IN
                    ('cash_refund', 'failed_generation', 'no_resemblance', 'wrong_style',
                     'broken_anatomy', 'content_violation', 'subjective',
                     'moderation_block', 'other')),
    flags       TEXT NOT NULL DEFAULT '[]',   -- JSON array of flag names
    actions     TEXT NOT NULL DEFAULT '[]',   -- JSON array of domain::Action
    trace       TEXT NOT NULL DEFAULT '[]',   -- JSON array of domain::TraceStep
    decision    TEXT NOT NULL,                -- the whole domain::Decision, JSON
    -- Where the case stands in the review queue.
    status      TEXT NOT NULL CHECK (status IN ('review', 'needs_info', 'resolved', 'ignored')),
    deadline    TEXT,                         -- when a person must have answered
    -- Compare-and-set token: every update is `WHERE id = ? AND version = ?`
    -- and bumps it, so two reviewers (or a reviewer and a follow-up) never
    -- overwrite each other silently.
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- The reviewers' queue: open cases, oldest deadline first.
CREATE INDEX cases_status_deadline ON cases (status, deadline, id);
-- `refundd cases --outcome …`.
CREATE INDEX cases_outcome ON cases (outcome, id);

-- Every email as it arrived, byte for byte. Ingest is idempotent: the same
-- Message-ID, or the same bytes, is the same row (ON CONFLICT DO NOTHING).
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Message-ID without angle brackets; NULL when the mail had none.
    -- UNIQUE lets any number of NULLs through.
    message_id  TEXT UNIQUE,
    sha256      TEXT NOT NULL UNIQUE,         -- hex digest of `raw`
    raw         BLOB NOT NULL,
    size        INTEGER NOT NULL CHECK (size >= 0),
    received_at TEXT NOT NULL,                -- INTERNALDATE / Maildir mtime
    source      TEXT NOT NULL,                -- `maildir:cur/…`, `imap:INBOX:uidvalidity:uid`
    status      TEXT NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'processed', 'failed')),
    error       TEXT,                         -- why it failed, in words
    case_id     INTEGER REFERENCES cases (id),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
-- The pipeline's work list: received, oldest first.
CREATE INDEX messages_unprocessed ON messages (received_at, id) WHERE status = 'received';
-- A case's thread, oldest first.
CREATE INDEX messages_case ON messages (case_id, id);

-- The status history of a case: who moved it from where to where, and why.
CREATE TABLE case_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id     INTEGER NOT NULL REFERENCES cases (id),
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,                -- `engine`, `customer`, `reviewer:ann@x`
    from_status TEXT CHECK (from_status IN ('review', 'needs_info', 'resolved', 'ignored')),
    to_status   TEXT NOT NULL CHECK (to_status IN ('review', 'needs_info', 'resolved', 'ignored')),
    reason      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX case_events_case ON case_events (case_id, id);

-- Effects outside the reply: cash refunds (Polar) and wallet credits
-- (ledger). Recorded before they are carried out; the idempotency key is
-- what Polar is given, so a resumed attempt can never pay twice.
CREATE TABLE actions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id         INTEGER NOT NULL REFERENCES cases (id),
    kind            TEXT NOT NULL CHECK (kind IN ('cash_refund', 'wallet_credit')),
    idempotency_key TEXT NOT NULL UNIQUE,
    order_id        TEXT,                     -- cash_refund
    wallet_id       TEXT,                     -- wallet_credit
    amount          INTEGER CHECK (amount >= 0), -- cash_refund, minor units excl. tax
    currency        TEXT,                     -- cash_refund, ISO 4217
    credits         INTEGER CHECK (credits >= 0), -- wallet_credit
    reason          TEXT CHECK (reason IN ('courtesy', 'failed_generation', 'goodwill')),
    generation_id   TEXT,                     -- wallet_credit, when named
    status          TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed', 'dry_run')),
    detail          TEXT,                     -- Polar refund id, or why it failed
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    -- Each kind carries its own columns.
    CHECK (kind <> 'cash_refund' OR (order_id IS NOT NULL AND amount IS NOT NULL AND currency IS NOT NULL)),
    CHECK (kind <> 'wallet_credit' OR (wallet_id IS NOT NULL AND credits IS NOT NULL AND reason IS NOT NULL))
);
CREATE INDEX actions_case ON actions (case_id, id);
-- Work left after a crash.
CREATE INDEX actions_pending ON actions (id) WHERE status = 'pending';

-- The outbox: every reply, rendered in full before it is sent, so that the
-- send is a pure transport step that can be retried.
CREATE TABLE replies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id     INTEGER NOT NULL REFERENCES cases (id),
    message_id  TEXT NOT NULL UNIQUE,         -- our Message-ID, without <>
    to_addr     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    raw         BLOB NOT NULL,                -- the RFC 5322 message bytes
    status      TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    sent_at     TEXT
);
CREATE INDEX replies_queued ON replies (id) WHERE status = 'queued';
CREATE INDEX replies_case ON replies (case_id, id);
-- The loop guard counts recent replies to one address.
CREATE INDEX replies_to_addr ON replies (lower(to_addr), created_at);

-- ---------------------------------------------------------------------
-- The ledger: a mirror of the Anumi app's wallets, as imported (DESIGN.md,
-- "Ledger import contract"), plus the wallet credits refundd writes. Ids
-- are the app's. No foreign keys between ledger tables: the export is
-- upserted line by line in any order, and the app owns its integrity.
-- Amounts are integer minor units excluding tax.
-- ---------------------------------------------------------------------

CREATE TABLE wallets (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL,                -- as given; matched case-insensitively
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'terminated')),
    created_at  TEXT NOT NULL
);
CREATE INDEX wallets_email ON wallets (lower(email));

CREATE TABLE orders (
    id             TEXT PRIMARY KEY,          -- Polar order UUID, lowercase
    wallet_id      TEXT NOT NULL,
    product        TEXT NOT NULL,
    credits        INTEGER NOT NULL CHECK (credits >= 0),
    amount         INTEGER NOT NULL CHECK (amount >= 0),
    tax_amount     INTEGER CHECK (tax_amount >= 0),
    currency       TEXT NOT NULL CHECK (length(currency) = 3 AND currency = upper(currency)),
    invoice_number TEXT,
    receipt_number TEXT,
    created_at     TEXT NOT NULL              -- purchase time: start of the P2 window
);
CREATE INDEX orders_wallet ON orders (wallet_id, created_at);
-- Customers quote invoice and receipt numbers in any case.
CREATE INDEX orders_invoice ON orders (upper(invoice_number));
CREATE INDEX orders_receipt ON orders (upper(receipt_number));

CREATE TABLE generations (
    id          TEXT PRIMARY KEY,
    wallet_id   TEXT NOT NULL,
    order_id    TEXT,
    credits     INTEGER NOT NULL CHECK (credits >= 0),
    status      TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'blocked')),
    style       TEXT,
    refunded    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TEXT NOT NULL
);
CREATE INDEX generations_wallet ON generations (wallet_id, created_at);

CREATE TABLE wallet_credits (
    id            TEXT PRIMARY KEY,           -- refundd's own: `wc-case-{case}-{generation|reason}`
    wallet_id     TEXT NOT NULL,
    credits       INTEGER NOT NULL CHECK (credits >= 0),
    reason        TEXT NOT NULL CHECK (reason IN ('courtesy', 'failed_generation', 'goodwill')),
    generation_id TEXT,
    case_id       INTEGER REFERENCES cases (id), -- set when refundd granted it
    created_at    TEXT NOT NULL
);
CREATE INDEX wallet_credits_wallet ON wallet_credits (wallet_id, created_at);
-- A case credits a generation once (the deterministic id guards the
-- generation-less credits, since UNIQUE lets NULLs through).
CREATE UNIQUE INDEX wallet_credits_case_generation ON wallet_credits (case_id, generation_id);

CREATE TABLE refunds (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    created_at  TEXT NOT NULL
);
CREATE INDEX refunds_order ON refunds (order_id);

CREATE TABLE chargebacks (
    id          TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    created_at  TEXT NOT NULL
);
CREATE INDEX chargebacks_order ON chargebacks (order_id);

-- ---------------------------------------------------------------------
-- Ingest checkpoint: the last IMAP UID stored per folder. A new
-- UIDVALIDITY (RFC 3501 §2.3.1.1) invalidates last_uid.
-- ---------------------------------------------------------------------
CREATE TABLE mailbox_cursors (
    folder      TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL CHECK (uidvalidity >= 0),
    last_uid    INTEGER NOT NULL CHECK (last_uid >= 0)
);
