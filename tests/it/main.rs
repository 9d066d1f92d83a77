<<<<<<< HEAD
//! The integration test binary: real servers, real databases, the real
//! binary. One module per area.

mod cli_pipeline;
mod corpus;
mod support;
=======
//! The integration test binary: real servers started by the harness.

mod imap;
mod mailstack;
mod smtp;
>>>>>>> imap
