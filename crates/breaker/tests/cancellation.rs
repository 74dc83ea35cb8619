//! A cancelled call is neutral: it counts as neither success nor failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use keel_breaker::{BreakerConfig, CircuitBreaker, State};

mod support;

/// Polls `fut` once (it must be pending), then drops it.
fn poll_once_then_drop<F: Future>(fut: F) {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
}

#[test]
fn cancellation_is_neutral_in_closed_state() {
    let breaker =
        CircuitBreaker::new(BreakerConfig::default().with_consecutive_failures(Some(2))).unwrap();
    breaker.try_acquire().unwrap().failure();
    poll_once_then_drop(breaker.call(std::future::pending::<Result<(), ()>>));
    let info = breaker.info();
    assert_eq!(info.consecutive_failures, 1, "not reset, not advanced");
    assert_eq!((info.cancelled, info.calls), (1, 1));
    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn cancelled_half_open_call_frees_the_trial_slot() {
    let (breaker, _clock) = support::due_for_trial(BreakerConfig::default());
    poll_once_then_drop(breaker.call(std::future::pending::<Result<(), ()>>));
    assert_eq!(breaker.state(), State::HalfOpen);
    let trial = breaker
        .try_acquire()
        .expect("the cancelled trial gave its slot back");
    trial.success();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test]
async fn call_runs_nothing_when_rejected() {
    let breaker =
        CircuitBreaker::new(BreakerConfig::default().with_consecutive_failures(Some(1))).unwrap();
    breaker.try_acquire().unwrap().failure();
    let mut ran = false;
    let result = breaker
        .call(|| {
            ran = true;
            async { Ok::<_, ()>(()) }
        })
        .await;
    assert!(result.unwrap_err().is_rejected());
    assert!(!ran);
}
