//! The integration test binary: real servers started by the harness.

mod imap;
mod mailstack;
mod smtp;
