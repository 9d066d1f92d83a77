-- A message larger than refundd's part size (1 MiB) keeps its bytes here,
-- in parts, instead of in `messages.raw` (which is then empty): a large
-- message is written and read a part at a time, so neither SQLite nor the
-- driver ever copies it whole (a 25 MB attachment stays one copy in
-- refundd's memory, not six). `raw_parts` says how many parts there are
-- (0: the bytes are in `raw`).
ALTER TABLE messages ADD COLUMN raw_parts INTEGER NOT NULL DEFAULT 0;
CREATE TABLE message_parts (
    message_id INTEGER NOT NULL REFERENCES messages (id),
    part       INTEGER NOT NULL CHECK (part >= 0),
    bytes      BLOB NOT NULL,
    PRIMARY KEY (message_id, part)
);
