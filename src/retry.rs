//! Capped exponential backoff with jitter, shared by every stage that
//! retries (Polar calls, IMAP reconnects, SMTP deferrals).

use rand::Rng;
use std::time::Duration;

/// Capped exponential backoff between retries; each wait is drawn uniformly
/// from the upper half of `min(cap, base * 2^attempt)`, so that many
/// instances retrying at once spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (0-based), with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        let full = self.base.saturating_mul(factor).min(self.cap);
        let half = full / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_and_stay_within_its_upper_half() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for attempt in 0..30 {
            let full = Duration::from_millis(100)
                .saturating_mul(2u32.saturating_pow(attempt.min(20)))
                .min(backoff.cap);
            let wait = backoff.delay(attempt);
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempt}: {wait:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }
}
