-- The desk at 100,000 cases, SQLite flavour: the overview page and `refundd
-- report` read sums, the queue's search looks words up. Kept in step with
-- migrations/postgres/0013_desk_scale.sql. Never edit once landed.
--
-- A report counts the cases created in a period by what happened to them:
-- when their first message arrived, when the customer was first answered,
-- whether a person ever had to look, and when a reviewer first acted. Read
-- from the messages, replies and events of each case, that is four index
-- lookups per case: 120,000 for a 30-day overview of a desk with 1,000
-- cases a day, too slow for a page. So each case carries these facts in
-- its own row, kept by the triggers below whatever path writes the rows
-- they come from, and a report is one scan of one index over the period
-- (`cases_report`), summed in SQL per local day.
--
-- Each trigger recomputes its fact from the rows (MIN, EXISTS), the same
-- definition the report used to evaluate per case, so that a message moved
-- to another case, a reply's address replaced by an erasure, or a case's
-- sender replaced, leave the facts exact. Messages, replies and events are
-- never deleted (retention and erasure empty their text, never the rows).
-- ---------------------------------------------------------------------
ALTER TABLE cases ADD COLUMN first_received_at TEXT;   -- MIN(messages.received_at) of the case
ALTER TABLE cases ADD COLUMN first_reply_at TEXT;      -- MIN(replies.created_at) to the sender
-- first_reply_at minus first_received_at in whole seconds (each instant
-- cut to its second, never below 0): the first-response time. Whole
-- seconds on both databases, so that their percentiles agree exactly.
ALTER TABLE cases ADD COLUMN first_response_seconds INTEGER;
-- A person had to look: an event ever moved the case to review.
ALTER TABLE cases ADD COLUMN ever_in_review BOOLEAN NOT NULL DEFAULT FALSE;
-- MIN(case_events.at) of events by a reviewer (`reviewer:…`).
ALTER TABLE cases ADD COLUMN first_reviewer_at TEXT;

-- Every instant is stored by refundd as RFC 3339 text in UTC
-- (`2026-06-10T12:00:00.123456+00:00`): its first 19 characters are the
-- whole second, which unixepoch() reads as UTC. (unixepoch() of the whole
-- text would round a fraction above .9995 up to the next second.)
CREATE TRIGGER cases_first_response AFTER UPDATE OF first_received_at, first_reply_at ON cases
    FOR EACH ROW
BEGIN
    UPDATE cases SET first_response_seconds =
        CASE WHEN NEW.first_received_at IS NOT NULL AND NEW.first_reply_at IS NOT NULL
             THEN MAX(unixepoch(substr(NEW.first_reply_at, 1, 19))
                      - unixepoch(substr(NEW.first_received_at, 1, 19)), 0)
        END
    WHERE id = NEW.id;
END;

CREATE TRIGGER messages_first_received_insert AFTER INSERT ON messages
    FOR EACH ROW WHEN NEW.case_id IS NOT NULL
BEGIN
    UPDATE cases SET first_received_at =
        (SELECT MIN(m.received_at) FROM messages m WHERE m.case_id = cases.id)
    WHERE id = NEW.case_id;
END;
CREATE TRIGGER messages_first_received_update AFTER UPDATE OF case_id, received_at ON messages
    FOR EACH ROW WHEN OLD.case_id IS NOT NEW.case_id OR OLD.received_at IS NOT NEW.received_at
BEGIN
    UPDATE cases SET first_received_at =
        (SELECT MIN(m.received_at) FROM messages m WHERE m.case_id = cases.id)
    WHERE id IN (OLD.case_id, NEW.case_id);
END;

CREATE TRIGGER replies_first_reply_insert AFTER INSERT ON replies
    FOR EACH ROW
BEGIN
    UPDATE cases SET first_reply_at =
        (SELECT MIN(r.created_at) FROM replies r
         WHERE r.case_id = cases.id AND lower(r.to_addr) = lower(cases.sender))
    WHERE id = NEW.case_id;
END;
CREATE TRIGGER replies_first_reply_update AFTER UPDATE OF case_id, to_addr, created_at ON replies
    FOR EACH ROW
    WHEN OLD.case_id IS NOT NEW.case_id OR OLD.to_addr IS NOT NEW.to_addr
      OR OLD.created_at IS NOT NEW.created_at
BEGIN
    UPDATE cases SET first_reply_at =
        (SELECT MIN(r.created_at) FROM replies r
         WHERE r.case_id = cases.id AND lower(r.to_addr) = lower(cases.sender))
    WHERE id IN (OLD.case_id, NEW.case_id);
END;
CREATE TRIGGER cases_first_reply_sender AFTER UPDATE OF sender ON cases
    FOR EACH ROW WHEN OLD.sender IS NOT NEW.sender
BEGIN
    UPDATE cases SET first_reply_at =
        (SELECT MIN(r.created_at) FROM replies r
         WHERE r.case_id = cases.id AND lower(r.to_addr) = lower(cases.sender))
    WHERE id = NEW.id;
END;

-- Events are only ever added.
CREATE TRIGGER case_events_review_facts AFTER INSERT ON case_events
    FOR EACH ROW WHEN NEW.to_status = 'review' OR NEW.actor LIKE 'reviewer:%'
BEGIN
    UPDATE cases SET
        ever_in_review = EXISTS (SELECT 1 FROM case_events e
                                 WHERE e.case_id = cases.id AND e.to_status = 'review'),
        first_reviewer_at = (SELECT MIN(e.at) FROM case_events e
                             WHERE e.case_id = cases.id AND e.actor LIKE 'reviewer:%')
    WHERE id = NEW.case_id;
END;

-- The cases already stored.
UPDATE cases SET
    first_received_at = (SELECT MIN(m.received_at) FROM messages m WHERE m.case_id = cases.id),
    first_reply_at = (SELECT MIN(r.created_at) FROM replies r
                      WHERE r.case_id = cases.id AND lower(r.to_addr) = lower(cases.sender)),
    ever_in_review = EXISTS (SELECT 1 FROM case_events e
                             WHERE e.case_id = cases.id AND e.to_status = 'review'),
    first_reviewer_at = (SELECT MIN(e.at) FROM case_events e
                         WHERE e.case_id = cases.id AND e.actor LIKE 'reviewer:%');

-- A period's cases from the index alone (covering): the case rows hold
-- the decision and its trace as JSON and would be read page by page.
CREATE INDEX cases_report ON cases (created_at, outcome, category, status, ever_in_review,
                                    first_response_seconds, first_reviewer_at, deadline,
                                    last_deadline);
-- What each reviewer did in a period, without reading every event.
CREATE INDEX case_events_reviewer_at ON case_events (at, actor, case_id, to_status)
    WHERE actor LIKE 'reviewer:%';
-- Credits granted per day, from the index alone.
CREATE INDEX wallet_credits_granted_sum ON wallet_credits (created_at, reason, credits)
    WHERE case_id IS NOT NULL;
DROP INDEX wallet_credits_granted;
-- Refunds carried out per day, from the index alone.
CREATE INDEX actions_refunds_done_sum ON actions (updated_at, currency, amount)
    WHERE kind = 'cash_refund' AND status = 'done';
DROP INDEX actions_refunds_done;

-- ---------------------------------------------------------------------
-- The queue's search: the words of the index, in order, so that a search
-- term is looked up as the few words it begins (`ruckerst` →
-- `ruckerstattung`) rather than as an FTS5 prefix query, which first
-- merges the lists of every message holding such a word: tens of
-- milliseconds for a word nearly every message holds. A view over the
-- index (no copy, no shadow table).
-- ---------------------------------------------------------------------
CREATE VIRTUAL TABLE message_search_terms USING fts5vocab(message_search, 'row');
