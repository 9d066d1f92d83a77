//! The integration test binary: real servers (Dovecot, an SMTP sink,
//! PostgreSQL, the Polar test server), real databases, the real binary.
//! One module per area.

mod browser;
mod cli_pipeline;
mod console;
mod corpus;
mod daemon;
mod deadlines;
mod imap;
mod lifecycle;
mod lifecycle_props;
mod mailstack;
mod metrics;
mod overview;
mod payments;
mod privacy;
mod replies;
mod search;
mod smtp;
mod support;
