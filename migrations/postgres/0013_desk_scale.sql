-- The desk at 100,000 cases, PostgreSQL flavour: the overview page and
-- `refundd report` read sums. Kept in step with
-- migrations/sqlite/0013_desk_scale.sql. Never edit once landed.
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
ALTER TABLE cases ADD COLUMN first_received_at TIMESTAMPTZ;  -- MIN(messages.received_at) of the case
ALTER TABLE cases ADD COLUMN first_reply_at TIMESTAMPTZ;     -- MIN(replies.created_at) to the sender
-- first_reply_at minus first_received_at in whole seconds (each instant
-- cut to its second, never below 0): the first-response time. Whole
-- seconds on both databases, so that their percentiles agree exactly.
ALTER TABLE cases ADD COLUMN first_response_seconds BIGINT;
-- A person had to look: an event ever moved the case to review.
ALTER TABLE cases ADD COLUMN ever_in_review BOOLEAN NOT NULL DEFAULT FALSE;
-- MIN(case_events.at) of events by a reviewer (`reviewer:…`).
ALTER TABLE cases ADD COLUMN first_reviewer_at TIMESTAMPTZ;

-- A case's own row: a new sender has its own first reply; the response
-- time follows its two instants.
CREATE FUNCTION cases_report_facts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sender IS DISTINCT FROM OLD.sender THEN
        NEW.first_reply_at := (SELECT MIN(r.created_at) FROM replies r
                               WHERE r.case_id = NEW.id AND lower(r.to_addr) = lower(NEW.sender));
    END IF;
    NEW.first_response_seconds := CASE
        WHEN NEW.first_received_at IS NOT NULL AND NEW.first_reply_at IS NOT NULL
        THEN GREATEST(CAST(floor(EXTRACT(EPOCH FROM NEW.first_reply_at)) AS BIGINT)
                      - CAST(floor(EXTRACT(EPOCH FROM NEW.first_received_at)) AS BIGINT), 0)
    END;
    RETURN NEW;
END
$$;
CREATE TRIGGER cases_report_facts BEFORE UPDATE OF sender, first_received_at, first_reply_at
    ON cases FOR EACH ROW EXECUTE FUNCTION cases_report_facts();

-- Each trigger below updates one case by its key per statement: a
-- function's plan is cached for its connection's life, and a plan made
-- while the table was small, for a condition naming two cases, can be a
-- sequential scan of `cases` kept for good.
CREATE FUNCTION case_first_received(case_id BIGINT) RETURNS void LANGUAGE sql AS $$
    UPDATE cases c SET first_received_at =
        (SELECT MIN(m.received_at) FROM messages m WHERE m.case_id = c.id)
    WHERE c.id = $1;
$$;
CREATE FUNCTION messages_first_received() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.case_id IS NOT NULL THEN
            PERFORM case_first_received(NEW.case_id);
        END IF;
    ELSIF OLD.case_id IS DISTINCT FROM NEW.case_id
          OR OLD.received_at IS DISTINCT FROM NEW.received_at THEN
        IF NEW.case_id IS NOT NULL THEN
            PERFORM case_first_received(NEW.case_id);
        END IF;
        IF OLD.case_id IS NOT NULL AND OLD.case_id IS DISTINCT FROM NEW.case_id THEN
            PERFORM case_first_received(OLD.case_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_first_received AFTER INSERT OR UPDATE OF case_id, received_at
    ON messages FOR EACH ROW EXECUTE FUNCTION messages_first_received();

CREATE FUNCTION case_first_reply(case_id BIGINT) RETURNS void LANGUAGE sql AS $$
    UPDATE cases c SET first_reply_at =
        (SELECT MIN(r.created_at) FROM replies r
         WHERE r.case_id = c.id AND lower(r.to_addr) = lower(c.sender))
    WHERE c.id = $1;
$$;
CREATE FUNCTION replies_first_reply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM case_first_reply(NEW.case_id);
    ELSIF OLD.case_id IS DISTINCT FROM NEW.case_id OR OLD.to_addr IS DISTINCT FROM NEW.to_addr
          OR OLD.created_at IS DISTINCT FROM NEW.created_at THEN
        PERFORM case_first_reply(NEW.case_id);
        IF OLD.case_id IS DISTINCT FROM NEW.case_id THEN
            PERFORM case_first_reply(OLD.case_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER replies_first_reply AFTER INSERT OR UPDATE OF case_id, to_addr, created_at
    ON replies FOR EACH ROW EXECUTE FUNCTION replies_first_reply();

-- Events are only ever added.
CREATE FUNCTION case_events_review_facts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.to_status = 'review' OR NEW.actor LIKE 'reviewer:%' THEN
        UPDATE cases c SET
            ever_in_review = EXISTS (SELECT 1 FROM case_events e
                                     WHERE e.case_id = c.id AND e.to_status = 'review'),
            first_reviewer_at = (SELECT MIN(e.at) FROM case_events e
                                 WHERE e.case_id = c.id AND e.actor LIKE 'reviewer:%')
        WHERE c.id = NEW.case_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER case_events_review_facts AFTER INSERT ON case_events
    FOR EACH ROW EXECUTE FUNCTION case_events_review_facts();

-- The cases already stored.
UPDATE cases SET
    first_received_at = (SELECT MIN(m.received_at) FROM messages m WHERE m.case_id = cases.id),
    first_reply_at = (SELECT MIN(r.created_at) FROM replies r
                      WHERE r.case_id = cases.id AND lower(r.to_addr) = lower(cases.sender)),
    ever_in_review = EXISTS (SELECT 1 FROM case_events e
                             WHERE e.case_id = cases.id AND e.to_status = 'review'),
    first_reviewer_at = (SELECT MIN(e.at) FROM case_events e
                         WHERE e.case_id = cases.id AND e.actor LIKE 'reviewer:%');

-- A period's cases from the index (index-only once vacuumed): the case
-- rows hold the decision and its trace as JSON.
CREATE INDEX cases_report ON cases (created_at)
    INCLUDE (outcome, category, status, ever_in_review, first_response_seconds,
             first_reviewer_at, deadline, last_deadline);
-- What each reviewer did in a period, without reading every event.
CREATE INDEX case_events_reviewer_at ON case_events (at) INCLUDE (actor, case_id, to_status)
    WHERE actor LIKE 'reviewer:%';
-- Credits granted per day, from the index alone.
CREATE INDEX wallet_credits_granted_sum ON wallet_credits (created_at) INCLUDE (reason, credits)
    WHERE case_id IS NOT NULL;
DROP INDEX wallet_credits_granted;
-- Refunds carried out per day, from the index alone.
CREATE INDEX actions_refunds_done_sum ON actions (updated_at) INCLUDE (currency, amount)
    WHERE kind = 'cash_refund' AND status = 'done';
DROP INDEX actions_refunds_done;

-- (The SQLite flavour also reads its search index's vocabulary, to look a
-- search term up as the words it begins; PostgreSQL's GIN index finds a
-- prefix among its ordered words itself.)
