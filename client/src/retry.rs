//! Retries of transient failures with exponential backoff and jitter.
//!
//! A call is retried only when its error is transient and the call is safe to repeat:
//! [`Error::Unavailable`] is retried for every call but real-time batches that append events,
//! [`Error::DeadlineExceeded`] only for idempotent ones (all reads are). Before retry `n` (0-based) the client sleeps a random duration
//! in `[d/2, d]` where `d = min(max_backoff, initial_backoff * 2^n)` ("equal jitter"), so that many
//! clients failing together do not come back in lockstep.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::error::{Error, Result};

/// Whether a call may safely run more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Repeating the call has no further effect (all reads).
    Idempotent,
    /// Repeating the call may fail or act twice (creating or dropping a table).
    NonIdempotent,
    /// Repeating a call that may have been applied would act twice (appending events): never
    /// retried, not even when the connection broke.
    Once,
}

/// How often and how patiently a failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// Upper bound of the wait before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of any single wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Three retries, waiting at most 100 ms, 200 ms and 400 ms.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Whether `error`, seen after `retries_done` retries of a call, should be retried.
    pub(crate) fn should_retry(
        &self,
        error: &Error,
        idempotency: Idempotency,
        retries_done: u32,
    ) -> bool {
        if retries_done >= self.max_retries {
            return false;
        }
        match error {
            Error::Unavailable(_) => idempotency != Idempotency::Once,
            Error::DeadlineExceeded(_) => idempotency == Idempotency::Idempotent,
            _ => false,
        }
    }

    /// The wait before retry number `retry` (0-based), for a uniform random `unit` in `[0, 1]`.
    pub(crate) fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let exponential = self.initial_backoff.saturating_mul(1u32 << retry.min(30));
        let ceiling = exponential.min(self.max_backoff);
        ceiling.div_f64(2.0).mul_f64(1.0 + unit.clamp(0.0, 1.0))
    }

    /// Runs `call` until it succeeds, fails permanently, or runs out of retries.
    pub(crate) async fn run<T, F, Fut>(&self, idempotency: Idempotency, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retries = 0;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) if self.should_retry(&error, idempotency, retries) => {
                    tokio::time::sleep(self.backoff(retries, random_unit())).await;
                    retries += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// A uniform random number in `[0, 1)`, good enough for jitter (not for anything secret).
pub(crate) fn random_unit() -> f64 {
    // Each `RandomState` is seeded freshly by the standard library.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x5eed);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_keeps_half_of_it() {
        let p = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(2, 0.5), Duration::from_millis(300));
        assert_eq!(p.backoff(4, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(60, 0.0), Duration::from_millis(500));
    }

    #[test]
    fn random_unit_is_in_range_and_varies() {
        let samples: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(samples.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(samples.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn only_transient_errors_are_retried() {
        let p = policy(3);
        let unavailable = Error::Unavailable(String::new());
        let deadline = Error::DeadlineExceeded(String::new());
        assert!(p.should_retry(&unavailable, Idempotency::Idempotent, 0));
        assert!(p.should_retry(&unavailable, Idempotency::NonIdempotent, 2));
        assert!(!p.should_retry(&unavailable, Idempotency::Idempotent, 3));
        assert!(p.should_retry(&deadline, Idempotency::Idempotent, 0));
        assert!(!p.should_retry(&deadline, Idempotency::NonIdempotent, 0));
        assert!(!p.should_retry(&Error::Internal(String::new()), Idempotency::Idempotent, 0));
        assert!(!p.should_retry(&unavailable, Idempotency::Once, 0));
        assert!(!p.should_retry(&deadline, Idempotency::Once, 0));
        assert!(!RetryPolicy::none().should_retry(&unavailable, Idempotency::Idempotent, 0));
    }

    #[tokio::test]
    async fn run_retries_until_success() {
        let attempts = AtomicU32::new(0);
        let result = policy(3)
            .run(Idempotency::Idempotent, || async {
                match attempts.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(Error::Unavailable("down".into())),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn run_gives_up_after_max_retries() {
        let attempts = AtomicU32::new(0);
        let result: Result<()> = policy(2)
            .run(Idempotency::Idempotent, || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(Error::Unavailable("down".into()))
            })
            .await;
        assert!(matches!(result, Err(Error::Unavailable(_))));
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn run_does_not_retry_permanent_errors() {
        let attempts = AtomicU32::new(0);
        let result: Result<()> = policy(5)
            .run(Idempotency::NonIdempotent, || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(Error::DeadlineExceeded("slow".into()))
            })
            .await;
        assert!(matches!(result, Err(Error::DeadlineExceeded(_))));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }
}
