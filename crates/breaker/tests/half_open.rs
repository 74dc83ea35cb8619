//! Half-open admission: exact under contention, and never stuck.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel_breaker::{BreakerConfig, CircuitBreaker, HalfOpenConfig, State};

mod support;

const PERMITTED: u32 = 3;

/// A breaker that is half-open and stays so: trials only ever give their
/// slot back without a verdict, and closing would need 16383 successes.
fn half_open_breaker() -> CircuitBreaker {
    let (breaker, _clock) = support::due_for_trial(
        BreakerConfig::default().with_half_open(HalfOpenConfig::new(PERMITTED, 16_383)),
    );
    drop(breaker.try_acquire().unwrap()); // moves to HalfOpen
    assert_eq!(breaker.state(), State::HalfOpen);
    breaker
}

#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    admitted: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        self.admitted.fetch_add(1, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_admission_never_exceeds_permitted_trials_under_contention() {
    let breaker = half_open_breaker();
    let gauge = Arc::new(Gauge::default());
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let breaker = breaker.clone();
            let gauge = gauge.clone();
            tokio::spawn(async move {
                for round in 0..200 {
                    if let Ok(permit) = breaker.try_acquire_owned() {
                        assert!(permit.is_trial());
                        gauge.enter();
                        tokio::task::yield_now().await;
                        gauge.leave();
                        if (i + round) % 2 == 0 {
                            drop(permit);
                        } else {
                            permit.ignore();
                        }
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let max = gauge.max.load(Ordering::SeqCst);
    assert!(max <= PERMITTED as usize, "{max} trials at once");
    assert!(
        gauge.admitted.load(Ordering::SeqCst) > PERMITTED as usize,
        "slots were never given back"
    );
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[test]
fn half_open_admission_is_exact_across_os_threads() {
    let breaker = half_open_breaker();
    let gauge = Arc::new(Gauge::default());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..20_000 {
                    if let Ok(permit) = breaker.try_acquire() {
                        gauge.enter();
                        std::hint::spin_loop();
                        gauge.leave();
                        drop(permit);
                    }
                }
            });
        }
    });
    assert!(gauge.max.load(Ordering::SeqCst) <= PERMITTED as usize);
    assert!(gauge.admitted.load(Ordering::SeqCst) > PERMITTED as usize);
}

#[test]
fn dropped_trial_frees_its_slot_without_a_verdict() {
    let (breaker, _clock) = support::due_for_trial(BreakerConfig::default());
    let trial = breaker.try_acquire().unwrap();
    assert!(breaker.try_acquire().is_err(), "the one slot is taken");
    drop(trial);
    assert_eq!(breaker.state(), State::HalfOpen, "a drop is no verdict");
    let info = breaker.info();
    assert_eq!((info.cancelled, info.failures, info.successes), (1, 1, 0));
    let trial = breaker.try_acquire().expect("the slot was given back");
    trial.success();
    assert_eq!(breaker.state(), State::Closed);
}

#[test]
fn trial_that_never_reports_is_taken_back_after_max_wait() {
    let (breaker, clock) = support::due_for_trial(
        BreakerConfig::default()
            .with_half_open(HalfOpenConfig::new(2, 1).with_max_wait(Duration::from_secs(10))),
    );
    let hung_a = breaker.try_acquire_owned().unwrap();
    clock.advance(Duration::from_secs(5));
    let hung_b = breaker.try_acquire_owned().unwrap();
    clock.advance(Duration::from_secs(9));
    // 14 s since the first trial, 9 s since the latest: not yet.
    assert!(breaker.try_acquire().is_err());
    clock.advance(Duration::from_secs(1));
    let fresh = breaker
        .try_acquire()
        .expect("slots held past max_wait are taken back");
    // The hung trials' late verdicts belong to a past round and change nothing.
    hung_a.failure();
    drop(hung_b);
    assert_eq!(breaker.state(), State::HalfOpen);
    fresh.success();
    assert_eq!(breaker.state(), State::Closed);
}
