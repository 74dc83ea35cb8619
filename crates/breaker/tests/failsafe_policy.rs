//! A failsafe `FailurePolicy` drives the trip decision.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]
#![cfg(feature = "failsafe")]

use std::time::Duration;

use keel_breaker::{BreakerConfig, CircuitBreaker, ManualClock, State};

#[test]
fn failsafe_policy_trips_with_its_own_open_duration() {
    let clock = ManualClock::new();
    let policy = failsafe::failure_policy::consecutive_failures(
        3,
        failsafe::backoff::constant(Duration::from_secs(5)),
    );
    let breaker = CircuitBreaker::builder(BreakerConfig::default().with_consecutive_failures(None))
        .clock(clock.clone())
        .failure_policy(policy)
        .build()
        .expect("a failsafe policy is a trip policy");
    for _ in 0..2 {
        breaker.try_acquire().unwrap().failure();
    }
    breaker.try_acquire().unwrap().success(); // failsafe resets on success
    for _ in 0..2 {
        breaker.try_acquire().unwrap().failure();
    }
    assert_eq!(breaker.state(), State::Closed);
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), State::Open);
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(
        rejected.retry_after(),
        Some(Duration::from_secs(5)),
        "failsafe's backoff"
    );
    clock.advance(Duration::from_secs(5));
    breaker.try_acquire().unwrap().success();
    assert_eq!(breaker.state(), State::Closed);
}
