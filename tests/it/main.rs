//! The integration test binary: real servers (Dovecot, an SMTP sink,
//! PostgreSQL), real databases, the real binary. One module per area.

mod cli_pipeline;
mod corpus;
mod imap;
mod mailstack;
mod payments;
mod smtp;
mod support;
