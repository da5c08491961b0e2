//! The pipeline's one retry wait: exponential backoff with full jitter (a random wait in
//! [0, base · 2^(attempt−1)], capped), so that many retrying clients spread out instead of
//! retrying in lockstep (AWS Architecture Blog, "Exponential Backoff And Jitter").
//!
//! Used by the SQS sender for failed entries and by the deliver stage's retry policy
//! ([`Backoff`]); the Salesforce client and the destination engine keep their own, next to
//! the protocol whose Retry-After rules they follow.

use std::time::Duration;

/// A random wait in [0, min(cap, base · 2^(attempt−1))]; attempt 0 and 1 use `base`.
pub fn full_jitter(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(cap);
    let jitter: f64 = rand::random();
    ceiling.mul_f64(jitter)
}

/// How long to wait before the next attempt when the other side did not say (no
/// Retry-After): [`full_jitter`], never less than `floor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub floor: Duration,
}

impl Backoff {
    /// Always the same wait (floor = cap = `wait`): what a queue's visibility timeout gives.
    pub fn fixed(wait: Duration) -> Backoff {
        Backoff {
            base: wait,
            cap: wait,
            floor: wait,
        }
    }

    /// The wait before attempt `attempt` (1 for the first retry).
    pub fn wait(&self, attempt: u32) -> Duration {
        full_jitter(self.base, attempt, self.cap).max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_to_the_cap_and_never_passes_it_or_falls_below_the_floor() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            floor: Duration::from_millis(10),
        };
        for attempt in 0..40 {
            let wait = b.wait(attempt);
            let ceiling = (Duration::from_millis(100) * (1 << attempt.saturating_sub(1).min(16)))
                .min(Duration::from_secs(1));
            assert!(wait <= ceiling.max(b.floor), "attempt {attempt}: {wait:?}");
            assert!(wait >= b.floor, "attempt {attempt}: {wait:?}");
        }
        assert_eq!(
            Backoff::fixed(Duration::from_secs(30)).wait(5),
            Duration::from_secs(30)
        );
    }
}
