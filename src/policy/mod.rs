//! PURE: (message facts, ledger facts, policy config, received_at, now) ->
//! Decision with a clause-by-clause trace. No I/O, no clock.

mod config;

pub use config::PolicyConfig;
