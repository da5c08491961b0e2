//! The deliver stage's retry policy ([`Backoff`]): the workspace's one full-jitter wait
//! (`sfsync_backoff::full_jitter`, which the Salesforce client, the destination engine and
//! the SQS sender use too), never less than a floor.

use std::time::Duration;

pub use sfsync_backoff::full_jitter;

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
