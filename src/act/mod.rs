//! Acting on decisions: cash refunds through Polar and wallet credits.
//!
//! Takes: typed requests from the pipeline, and the `pending` cash refund
//! actions it committed. Gives: typed results and errors that say whether a
//! retry can help; refunds paid exactly once, the ledger kept in step with
//! Polar. Never decides policy: what to refund is the pipeline's decision;
//! this stage only checks that it is still safe to pay. Fails with one
//! error enum per part.
//!
//! - [`polar`]: the Polar API client (orders, customers, refunds, disputes)
//!   and webhook verification.
//! - [`config`]: `[polar]`, the guard rails included.
//! - [`guard`]: the pure checks before a refund is posted.
//! - [`payments`]: the payment stage (exactly-once refunds, held replies).
//! - [`ledger_sync`]: webhook deliveries and the dispute poll -> ledger.
//! - [`webhooks`]: the `POST /webhooks/polar` endpoint.
//!
//! Wallet credits are written by the pipeline itself, in the decision's
//! transaction (`Tx::insert_wallet_credit_once`).

pub mod config;
pub mod guard;
pub mod ledger_sync;
pub mod payments;
pub mod polar;
pub mod webhooks;

use std::sync::OnceLock;

/// The environment variable naming the crash point to die at.
pub const CRASHPOINT_ENV: &str = "REFUNDD_CRASHPOINT";

/// A test hook: when `REFUNDD_CRASHPOINT` names this point, the process
/// aborts here at once (no unwinding, no destructors, no commit), as a
/// power cut or SIGKILL would. Compiled in always, so the crash-matrix
/// test exercises the real binary; otherwise it costs one load and one
/// string comparison (the variable is read once per process).
/// The points of a refund are listed in [`payments::CRASHPOINTS`].
pub fn crashpoint(name: &str) {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    if POINT
        .get_or_init(|| std::env::var(CRASHPOINT_ENV).ok())
        .as_deref()
        == Some(name)
    {
        std::process::abort();
    }
}
