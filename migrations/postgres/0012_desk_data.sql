-- The desk's data, PostgreSQL flavour: search over what customers wrote,
-- raw mail that goes when the law says so, erasure on request, and the
-- indexes behind the overview page. Kept in step with
-- migrations/sqlite/0012_desk_data.sql. Never edit once landed.

-- ---------------------------------------------------------------------
-- Search. The queue finds a case by the words its customer wrote: the
-- sender's name and address, the subject, and the body as decoded text
-- (base64 and quoted-printable decoded, charsets converted, HTML-only
-- mail turned into text), never the raw MIME. refundd computes the words
-- (`parse::search`: letters and digits, lowercased, accents removed) when
-- a message is stored, so that both databases agree on what a word is.
--
-- Why full-text search (tsvector + GIN) and not pg_trgm: it is part of
-- PostgreSQL itself (pg_trgm is an extension that needs CREATE EXTENSION
-- rights), a GIN index over words answers word and prefix queries
-- (`'rucker':*`) in milliseconds at any table size, and the vector holds
-- only the distinct words, not a second copy of the text. A trigram index
-- would find any substring but needs the text stored and is several times
-- larger; reviewers search for names, words and references, which words
-- and prefixes cover. The vector is built with array_to_tsvector from
-- refundd's words (no parser, no dictionary, no positions), so the
-- `simple`/language configurations never split or stem differently from
-- the SQLite index.
-- ---------------------------------------------------------------------
CREATE TABLE message_search (
    message_id BIGINT PRIMARY KEY REFERENCES messages (id),
    words      TSVECTOR NOT NULL
);
CREATE INDEX message_search_words ON message_search USING GIN (words);
-- A message is indexed in the transaction that stores it; `search_indexed`
-- says it was, so that messages stored before this migration (and any a
-- crash left behind) are indexed when refundd starts
-- (`Store::index_pending_messages`): SQL alone cannot decode MIME.
ALTER TABLE messages ADD COLUMN search_indexed BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX messages_unindexed ON messages (id) WHERE NOT search_indexed;
-- From a message found to its case from the index alone.
CREATE INDEX messages_id_case ON messages (id, case_id);
-- The queue's search by order: cases naming an order.
CREATE INDEX cases_order ON cases (order_id);

-- ---------------------------------------------------------------------
-- Retention and erasure. The raw bytes of a message (and so its
-- attachments) can be removed while everything decided about it stays:
-- `raw` becomes empty, `raw_removed` says why and `raw_removed_at` when.
--   retention  the deadline sweep removed it: its case was closed and the
--              message older than `[retention] raw_mail_days`
--   erasure    `refundd erase` removed it at the person's request
-- `size` and `sha256` stay: the size for the record, the hash so that the
-- same message delivered again is still recognised and not stored anew.
-- ---------------------------------------------------------------------
ALTER TABLE messages ADD COLUMN raw_removed TEXT CHECK (raw_removed IN ('retention', 'erasure'));
ALTER TABLE messages ADD COLUMN raw_removed_at TIMESTAMPTZ;
-- The sweep's work: messages whose bytes are still kept, oldest first.
CREATE INDEX messages_raw_kept ON messages (received_at) WHERE raw_removed IS NULL;

-- The audit log learns erasure: `refundd erase` writes one line naming
-- the pseudonym and what was removed (never the address itself).
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN
    ('login', 'login_failed', 'logout', 'claim', 'release', 'approve', 'deny',
     'ask', 'note', 'reviewer_added', 'token_created', 'take_over',
     'reviewer_disabled', 'reviewer_enabled', 'token_revoked', 'erase'));

-- ---------------------------------------------------------------------
-- The overview page and `refundd report` (one query path).
-- ---------------------------------------------------------------------
-- Deadline compliance needs the deadline a case had when a reviewer
-- answered it, but a case leaving the queue loses its `deadline` (it is
-- no longer due). `last_deadline` keeps the deadline a case had when it
-- last left the queue, set by this trigger whatever path moved it (every
-- move is `Tx::apply_transition`, which writes `deadline`). Cases closed
-- before this migration have none: their compliance cannot be known.
ALTER TABLE cases ADD COLUMN last_deadline TIMESTAMPTZ;
CREATE FUNCTION cases_keep_last_deadline() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.deadline IS NOT NULL AND NEW.deadline IS NULL THEN
        NEW.last_deadline := OLD.deadline;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER cases_keep_last_deadline BEFORE UPDATE OF deadline ON cases
    FOR EACH ROW EXECUTE FUNCTION cases_keep_last_deadline();

-- Messages in per period, and each case's first message, first reply and
-- review history read from indexes, so that a 30-day overview over 100,000 cases does
-- not visit message or reply rows.
CREATE INDEX messages_received ON messages (received_at);
CREATE INDEX messages_case_received ON messages (case_id, received_at);
CREATE INDEX replies_case_created ON replies (case_id, created_at, to_addr);
CREATE INDEX case_events_case_status ON case_events (case_id, to_status, actor, at);
-- Money refunded and credits granted per day.
CREATE INDEX actions_refunds_done ON actions (updated_at)
    WHERE kind = 'cash_refund' AND status = 'done';
CREATE INDEX wallet_credits_granted ON wallet_credits (created_at) WHERE case_id IS NOT NULL;
