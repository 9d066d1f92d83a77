//! The integration test binary: real servers (Dovecot, an SMTP sink,
//! PostgreSQL), real databases, the real binary. One module per area.

mod browser;
mod cli_pipeline;
mod console;
mod corpus;
mod imap;
mod mailstack;
mod smtp;
mod support;
