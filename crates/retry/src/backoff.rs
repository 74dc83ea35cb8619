//! Bring-your-own schedules: the [`Backoff`] trait and the built-in
//! [`ExponentialBackoff`].

use std::time::Duration;

use crate::classify::ErrorClass;
use crate::schedule::Schedule;

/// A source of delays between attempts. The retrier asks it once per retry;
/// `None` means give up. One value serves one operation (a factory makes a
/// fresh one per operation, see [`RetrierBuilder::backoff`](crate::RetrierBuilder::backoff)).
pub trait Backoff: Send {
    /// The delay before the next attempt, after an error of `class`.
    fn next_delay(&mut self, class: ErrorClass) -> Option<Duration>;
}

/// A [`Schedule`] as a [`Backoff`]: delays along the schedule's jittered
/// curve until its attempts are used up.
///
/// ```
/// use std::time::Duration;
/// use keel_retry::{Backoff, ErrorClass, ExponentialBackoff, Jitter, Schedule};
///
/// let mut b = ExponentialBackoff::new(Schedule::default().with_jitter(Jitter::None), 7);
/// assert_eq!(b.next_delay(ErrorClass::Other), Some(Duration::from_millis(100)));
/// assert_eq!(b.next_delay(ErrorClass::Other), Some(Duration::from_millis(200)));
/// assert_eq!(b.next_delay(ErrorClass::Other), None); // 3 attempts in all
/// ```
#[derive(Debug)]
pub struct ExponentialBackoff {
    schedule: Schedule,
    retries: u32,
    previous: Duration,
    rng: fastrand::Rng,
}

impl ExponentialBackoff {
    /// Delays along `schedule`, with jitter drawn from a generator seeded by `seed`.
    pub fn new(schedule: Schedule, seed: u64) -> Self {
        Self {
            previous: schedule.base,
            schedule,
            retries: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }
}

impl Backoff for ExponentialBackoff {
    fn next_delay(&mut self, _class: ErrorClass) -> Option<Duration> {
        if self.retries + 1 >= self.schedule.max_attempts {
            return None;
        }
        self.retries += 1;
        let delay = self
            .schedule
            .delay(self.retries, self.previous, &mut self.rng);
        self.previous = delay;
        Some(delay)
    }
}

/// `backoff` crate schedules, for users who already configure them.
///
/// The `backoff` crate is unmaintained (RUSTSEC-2025-0012) and pulls
/// `instant` (RUSTSEC-2024-0384); this feature is off by default and meant
/// for migrating.
#[cfg(feature = "backoff")]
#[cfg_attr(docsrs, doc(cfg(feature = "backoff")))]
#[derive(Debug)]
pub struct BackoffCompat<B>(pub B);

#[cfg(feature = "backoff")]
impl<B: backoff::backoff::Backoff + Send> Backoff for BackoffCompat<B> {
    fn next_delay(&mut self, _class: ErrorClass) -> Option<Duration> {
        self.0.next_backoff()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "backoff")]
    #[test]
    fn backoff_crate_schedules_drive_the_delays() {
        let b = backoff::backoff::Constant::new(Duration::from_millis(30));
        let mut compat = BackoffCompat(b);
        assert_eq!(
            compat.next_delay(ErrorClass::Other),
            Some(Duration::from_millis(30))
        );
    }

    #[test]
    fn exponential_backoff_stops_after_its_attempts() {
        let mut b = ExponentialBackoff::new(Schedule::new(4, Duration::from_millis(10)), 1);
        let delays: Vec<_> = std::iter::from_fn(|| b.next_delay(ErrorClass::Other)).collect();
        assert_eq!(delays.len(), 3);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
    }
}
