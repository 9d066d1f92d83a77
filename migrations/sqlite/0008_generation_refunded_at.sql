-- When a generation's credits came back, as the Anumi app exports it
-- (DESIGN.md, "Ledger import contract": a generation's optional
-- `refunded_at`), SQLite flavour. Kept in step with
-- migrations/postgres/0008_generation_refunded_at.sql. Never edit once
-- landed.

-- NULL when the ledger does not say: the contract does not promise it,
-- and the P1 reply then says "already refunded" without a date. A time
-- on a generation that is not refunded is a contradiction the import
-- refuses; the CHECK keeps it out of the table whoever writes it.
-- Existing rows get NULL, which passes.
ALTER TABLE generations
    ADD COLUMN refunded_at TEXT CHECK (refunded_at IS NULL OR refunded);
