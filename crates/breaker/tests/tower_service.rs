//! The tower service: rejection never touches the inner service.
#![cfg(feature = "tower")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use keel_breaker::service::BoxError;
use keel_breaker::{
    BreakerConfig, CircuitBreaker, CircuitBreakerLayer, HalfOpenConfig, ManualClock, Outcome,
    Rejected, State,
};
use tower::{Layer, Service, ServiceExt};

/// An inner service that counts how often it is polled and called, and
/// fails requests that ask it to.
#[derive(Clone, Debug, Default)]
struct Counting {
    polls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Down;
impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("database down")
    }
}
impl std::error::Error for Down {}

impl Service<bool> for Counting {
    type Response = &'static str;
    type Error = Down;
    type Future = std::future::Ready<Result<&'static str, Down>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Down>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, fail: bool) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if fail { Err(Down) } else { Ok("row") })
    }
}

fn breaker(clock: &ManualClock) -> CircuitBreaker {
    CircuitBreaker::builder(BreakerConfig::default().with_consecutive_failures(Some(1)))
        .clock(clock.clone())
        .build()
        .expect("valid config")
}

#[tokio::test]
async fn open_breaker_rejects_without_polling_the_inner_service() {
    let clock = ManualClock::new();
    let inner = Counting::default();
    let mut svc = CircuitBreakerLayer::new(breaker(&clock)).layer(inner.clone());
    assert!(svc.ready().await.unwrap().call(true).await.is_err());
    assert_eq!(svc.breaker().state(), State::Open);
    let (polls, calls) = (
        inner.polls.load(Ordering::SeqCst),
        inner.calls.load(Ordering::SeqCst),
    );

    for _ in 0..3 {
        let err: BoxError = svc.ready().await.unwrap().call(false).await.unwrap_err();
        let rejected = err.downcast_ref::<Rejected>().expect("a Rejected");
        assert_eq!(rejected.state(), State::Open);
        assert!(rejected.retry_after().is_some());
    }
    // Called without poll_ready, too.
    assert!(svc.call(false).await.is_err());
    assert_eq!(
        inner.polls.load(Ordering::SeqCst),
        polls,
        "inner polled while open"
    );
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        calls,
        "inner called while open"
    );

    clock.advance(Duration::from_secs(60));
    assert_eq!(svc.ready().await.unwrap().call(false).await.unwrap(), "row");
    assert_eq!(svc.breaker().state(), State::Closed);
}

#[tokio::test]
async fn inner_errors_keep_their_type_behind_the_box() {
    let clock = ManualClock::new();
    let mut svc = CircuitBreakerLayer::new(breaker(&clock)).layer(Counting::default());
    let err = svc.ready().await.unwrap().call(true).await.unwrap_err();
    assert!(err.downcast_ref::<Down>().is_some());
}

#[tokio::test]
async fn classifier_keeps_caller_errors_from_tripping() {
    let clock = ManualClock::new();
    let layer = CircuitBreakerLayer::new(breaker(&clock)).with_classifier(
        |r: &Result<&'static str, Down>| match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Ignored,
        },
    );
    let mut svc = layer.layer(Counting::default());
    for _ in 0..5 {
        assert!(svc.ready().await.unwrap().call(true).await.is_err());
    }
    assert_eq!(svc.breaker().state(), State::Closed);
    assert_eq!(svc.breaker().info().ignored, 5);
}

/// Opens on one failure; half-open, admits one trial at a time.
fn one_trial_breaker(clock: &ManualClock) -> CircuitBreaker {
    CircuitBreaker::builder(
        BreakerConfig::default()
            .with_consecutive_failures(Some(1))
            .with_half_open(HalfOpenConfig::new(1, 1)),
    )
    .clock(clock.clone())
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_clone_starts_not_ready_and_never_shares_a_trial_permit() {
    let clock = ManualClock::new();
    let b = one_trial_breaker(&clock);
    let mut svc = CircuitBreakerLayer::new(b.clone()).layer(Counting::default());
    assert!(svc.ready().await.unwrap().call(true).await.is_err());
    clock.advance(Duration::from_secs(60));
    // The original takes the one trial slot in poll_ready...
    svc.ready().await.unwrap();
    // ...a clone made now does not inherit it and is rejected.
    let mut clone = svc.clone();
    let err = clone.ready().await.unwrap().call(false).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Rejected>().unwrap().state(),
        State::HalfOpen
    );
    assert_eq!(svc.call(false).await.unwrap(), "row");
    assert_eq!(b.state(), State::Closed);
}

/// An inner service whose readiness fails: the backend is failing.
#[derive(Clone, Debug)]
struct NeverReady;
impl Service<()> for NeverReady {
    type Response = ();
    type Error = Down;
    type Future = std::future::Ready<Result<(), Down>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Down>> {
        Poll::Ready(Err(Down))
    }
    fn call(&mut self, (): ()) -> Self::Future {
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn inner_readiness_errors_count_as_failures() {
    let clock = ManualClock::new();
    let mut svc = CircuitBreakerLayer::new(breaker(&clock)).layer(NeverReady);
    let err = svc.ready().await.unwrap_err();
    assert!(err.downcast_ref::<Down>().is_some());
    assert_eq!(svc.breaker().state(), State::Open);
}

/// A trial slot reserved by `poll_ready` comes back when the service is
/// dropped without calling: the next caller gets it.
#[tokio::test]
async fn a_service_dropped_after_poll_ready_gives_its_trial_back() {
    let clock = ManualClock::new();
    let b = one_trial_breaker(&clock);
    let layer = CircuitBreakerLayer::new(b.clone());
    let mut svc = layer.layer(Counting::default());
    assert!(svc.ready().await.unwrap().call(true).await.is_err());
    clock.advance(Duration::from_secs(60));
    svc.ready().await.unwrap();
    // The slot is taken: another service is turned away...
    let mut other = layer.layer(Counting::default());
    assert!(other.ready().await.unwrap().call(false).await.is_err());
    // ...until the holder goes without calling.
    drop(svc);
    let mut next = layer.layer(Counting::default());
    assert_eq!(
        next.ready().await.unwrap().call(false).await.unwrap(),
        "row"
    );
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.info().cancelled, 1);
}

/// The wait between `poll_ready` and `call` is not the call's time: a call
/// made long after its service became ready is not slow.
#[tokio::test]
async fn slow_calls_are_timed_from_call_not_from_poll_ready() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder(
        BreakerConfig::default().with_slow_calls(0.5, Duration::from_secs(1)),
    )
    .clock(clock.clone())
    .build()
    .unwrap();
    let mut svc = CircuitBreakerLayer::new(b.clone()).layer(Counting::default());
    svc.ready().await.unwrap();
    clock.advance(Duration::from_secs(5));
    assert_eq!(svc.call(false).await.unwrap(), "row");
    let window = b.info().window.unwrap();
    assert_eq!((window.calls, window.slow), (1, 0));
    // A call that itself takes long is slow.
    let slow = svc.ready().await.unwrap().call(false);
    clock.advance(Duration::from_secs(5));
    slow.await.unwrap();
    let window = b.info().window.unwrap();
    assert_eq!((window.calls, window.slow), (2, 1));
}

/// A layer over a `'static` breaker behaves as one over an owned breaker:
/// its services and their clones share it, failures trip it, an open
/// breaker turns calls away without calling the inner service.
#[tokio::test]
async fn a_static_breaker_guards_like_an_owned_one() {
    let clock = ManualClock::new();
    let b: &'static CircuitBreaker = Box::leak(Box::new(breaker(&clock)));
    let inner = Counting::default();
    let mut svc = CircuitBreakerLayer::from_static(b).layer(inner.clone());
    let mut clone = svc.clone();
    assert_eq!(svc.ready().await.unwrap().call(false).await.unwrap(), "row");
    assert!(clone.ready().await.unwrap().call(true).await.is_err());
    assert_eq!(b.state(), State::Open);
    let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
    assert!(err.downcast_ref::<Rejected>().is_some());
    assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    assert_eq!((b.info().successes, b.info().failures), (1, 1));
    assert!(std::ptr::eq(svc.breaker(), b));
}
