//! The one retry wait of sfsync: exponential backoff with full jitter.
//!
//! Every component that retries (the Salesforce client, the destination engine, the SQS
//! sender, the deliver stage) waits a uniformly random time in
//! `[0, min(cap, base · 2^(attempt−1))]` before attempt `attempt + 1`. Full jitter spreads
//! many clients that failed together over the whole window instead of having them retry in
//! lockstep (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015). Each caller
//! keeps its own rules about *whether* to retry and about Retry-After; only the wait is here.
//!
//! A crate of its own because its users do not depend on one another: the Salesforce
//! client and the destination engine are siblings below the pipeline.

use std::time::Duration;

use rand::Rng as _;

/// A random wait in `[0, min(cap, base · 2^(attempt−1))]`, both ends included.
///
/// `attempt` counts retries from 1 (the first retry waits up to `base`); 0 is treated as 1.
/// The doubling stops at 2^31 and saturates, so any attempt number is safe.
pub fn full_jitter(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let ceiling = ceiling(base, attempt, cap);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// The largest wait [`full_jitter`] can return for `attempt`.
pub fn ceiling(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    base.saturating_mul(1u32 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_ceiling_doubles_from_base_and_stops_at_the_cap() {
        let cap = Duration::from_secs(1);
        assert_eq!(ceiling(100 * MS, 0, cap), 100 * MS);
        assert_eq!(ceiling(100 * MS, 1, cap), 100 * MS);
        assert_eq!(ceiling(100 * MS, 2, cap), 200 * MS);
        assert_eq!(ceiling(100 * MS, 4, cap), 800 * MS);
        assert_eq!(ceiling(100 * MS, 5, cap), cap);
        assert_eq!(ceiling(100 * MS, u32::MAX, cap), cap);
        assert_eq!(
            ceiling(Duration::MAX, u32::MAX, Duration::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn every_wait_lies_within_zero_and_the_ceiling() {
        let cap = Duration::from_secs(2);
        for attempt in 0..40 {
            for _ in 0..50 {
                let wait = full_jitter(10 * MS, attempt, cap);
                assert!(
                    wait <= ceiling(10 * MS, attempt, cap),
                    "attempt {attempt}: {wait:?}"
                );
            }
        }
        assert_eq!(full_jitter(Duration::ZERO, 3, cap), Duration::ZERO);
        assert_eq!(full_jitter(10 * MS, 3, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_waits_are_spread_over_the_window_not_fixed() {
        // 200 draws over [0, 1 s]: all equal, or all in one half, would mean no jitter.
        // The chance of all 200 landing in one half by luck is 2 · 2^-200.
        let waits: Vec<Duration> = (0..200)
            .map(|_| full_jitter(Duration::from_secs(1), 1, Duration::from_secs(1)))
            .collect();
        let half = Duration::from_millis(500);
        assert!(waits.iter().any(|w| *w < half));
        assert!(waits.iter().any(|w| *w > half));
    }
}
