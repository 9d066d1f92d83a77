//! The policy's thresholds (`[policy]` in the config file), with POLICY.md's
//! defaults. Every number the engine compares against lives here.

use serde::{Deserialize, Serialize};

/// Thresholds of the refund policy. Every field has POLICY.md's default, so
/// an empty `[policy]` table (or none) gives the published policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// P2/P4: days after purchase within which a cash refund may be asked.
    pub refund_window_days: i64,
    /// P3/P4: the window over which courtesy credits are counted.
    pub courtesy_window_days: i64,
    /// P3/P4: courtesy credits allowed per wallet within the window.
    pub courtesy_cap: u32,
    /// P4 abuse: the look-back for counting cash refunds.
    pub abuse_window_days: i64,
    /// P4 abuse: this many cash refunds within the look-back is a pattern.
    pub abuse_max_cash_refunds: u32,
    /// P4 abuse: this many orders refunded at least `abuse_refunded_share_percent`…
    pub abuse_refunded_orders: u32,
    /// …percent of their amount is a pattern.
    pub abuse_refunded_share_percent: u32,
    /// Shadow mode: `refundd run` decides every message and records the
    /// engine's proposal, but carries out nothing and answers nothing
    /// itself — every case waits for a reviewer, whose decision is compared
    /// with the proposal. Not part of the policy: [`decide`](super::decide)
    /// never reads it.
    pub shadow: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            refund_window_days: 14,
            courtesy_window_days: 90,
            courtesy_cap: 1,
            abuse_window_days: 180,
            abuse_max_cash_refunds: 2,
            abuse_refunded_orders: 3,
            abuse_refunded_share_percent: 50,
            shadow: false,
        }
    }
}
