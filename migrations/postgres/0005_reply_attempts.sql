-- A send in progress. The row is committed just before a reply is handed
-- to the mail server and deleted in the transaction that records the
-- outcome. A row that survives a restart means refundd died mid-send: the
-- reply may or may not have left, so it is not sent again (at most once)
-- and its case goes to a reviewer instead.
CREATE TABLE reply_attempts (
    reply_id   BIGINT PRIMARY KEY REFERENCES replies (id),
    started_at TIMESTAMPTZ NOT NULL
);
