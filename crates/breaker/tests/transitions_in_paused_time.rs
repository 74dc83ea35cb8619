//! Every transition in tokio's paused time, through the async API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]
#![cfg(feature = "tokio")]

use std::time::Duration;

use keel_breaker::{
    BreakerConfig, CallError, CircuitBreaker, HalfOpenConfig, OpenBackoff, State, TokioClock,
};

async fn ok() -> Result<(), &'static str> {
    Ok(())
}

async fn down() -> Result<(), &'static str> {
    Err("down")
}

#[tokio::test(start_paused = true)]
async fn closed_open_half_open_closed_and_back_open() {
    let breaker = CircuitBreaker::builder(
        BreakerConfig::default()
            .with_consecutive_failures(Some(3))
            .with_open_duration(Duration::from_secs(10))
            .with_open_backoff(OpenBackoff::new(3.0, Duration::from_secs(60)).with_jitter(0.0))
            .with_half_open(HalfOpenConfig::new(1, 2)),
    )
    .clock(TokioClock)
    .build()
    .unwrap();

    for _ in 0..3 {
        assert!(matches!(
            breaker.call(down).await,
            Err(CallError::Inner("down"))
        ));
    }
    assert_eq!(breaker.state(), State::Open);

    tokio::time::advance(Duration::from_secs(9)).await;
    match breaker.call(ok).await {
        Err(CallError::Rejected(r)) => assert_eq!(r.retry_after(), Some(Duration::from_secs(1))),
        other => panic!("expected a rejection, got {other:?}"),
    }

    tokio::time::advance(Duration::from_secs(1)).await;
    breaker.call(down).await.unwrap_err(); // the trial fails
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        breaker.info().retry_after,
        Some(Duration::from_secs(30)),
        "10 s × 3"
    );

    tokio::time::sleep(Duration::from_secs(30)).await;
    breaker.call(ok).await.unwrap();
    assert_eq!(
        breaker.state(),
        State::HalfOpen,
        "one of two trial successes"
    );
    breaker.call(ok).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.info().opens, 2);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_are_timed_on_tokio_time() {
    let breaker = CircuitBreaker::builder(
        BreakerConfig::default()
            .with_consecutive_failures(None)
            .with_slow_calls(0.5, Duration::from_millis(200))
            .with_min_calls(2),
    )
    .clock(TokioClock)
    .build()
    .unwrap();
    breaker.call(ok).await.unwrap();
    breaker
        .call(|| async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::Open);
    let window = breaker.info().window.unwrap();
    assert_eq!((window.calls, window.slow), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_a_time_window() {
    let breaker = CircuitBreaker::builder(
        BreakerConfig::default()
            .with_consecutive_failures(None)
            .with_failure_rate(0.5)
            .with_min_calls(5),
    )
    .clock(TokioClock)
    .build()
    .unwrap();
    // Two failures, then 31 s later (out of the 30 s window) three of five fail.
    breaker.call(down).await.unwrap_err();
    breaker.call(down).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(31)).await;
    for _ in 0..2 {
        breaker.call(ok).await.unwrap();
    }
    for _ in 0..2 {
        breaker.call(down).await.unwrap_err();
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "4 calls in the window < min_calls"
    );
    breaker.call(down).await.unwrap_err();
    assert_eq!(breaker.state(), State::Open, "3 of 5 failed");
}
