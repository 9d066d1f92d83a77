//! Acting on decisions: cash refunds through Polar and wallet credits.
//!
//! Takes: typed requests from the pipeline. Gives: typed results and errors
//! that say whether a retry can help. Never decides policy: what to refund and
//! whether to do it exactly once is decided by the caller on top of these
//! clients. Fails with one error enum per client (see [`polar::PolarError`]).
//!
//! - [`polar`]: the Polar API client (orders, customers, refunds, disputes)
//!   and webhook verification.

pub mod polar;
