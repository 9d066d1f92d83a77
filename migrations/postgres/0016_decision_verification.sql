-- refundd's own sender verification (DKIM, SPF, DMARC, ARC) of the
-- message an engine decision read, as JSON, when `[sender_auth] mode` is
-- `verify` or `either`: a replay decides again with what was verified at
-- the time (keys rotate, DNS answers change), not with headers alone.
ALTER TABLE engine_decisions ADD COLUMN verification TEXT;
