//! The tower service: re-issues clones of the request, honouring readiness.
#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use keel_retry::service::{BoxError, RetryLayer};
use keel_retry::{ErrorClass, GaveUp, GaveUpError, Retrier, RetryPolicy, Verdict};
use tower::{Layer, Service, ServiceExt};

#[derive(Debug, PartialEq)]
enum DbError {
    Reset,
    Unique,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for DbError {}

/// Fails the first `failures` calls with `error`; counts readiness polls
/// and checks each call was preceded by one.
#[derive(Clone, Debug)]
struct Flaky {
    failures: u32,
    error: fn() -> DbError,
    calls: Arc<AtomicU32>,
    readies: Arc<AtomicU32>,
    ready: bool,
}

impl Flaky {
    fn new(failures: u32, error: fn() -> DbError) -> Self {
        Self {
            failures,
            error,
            calls: Arc::default(),
            readies: Arc::default(),
            ready: false,
        }
    }
}

impl Service<String> for Flaky {
    type Response = String;
    type Error = DbError;
    type Future = std::future::Ready<Result<String, DbError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DbError>> {
        self.readies.fetch_add(1, Ordering::SeqCst);
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: String) -> Self::Future {
        assert!(std::mem::take(&mut self.ready), "called without poll_ready");
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n < self.failures {
            Err((self.error)())
        } else {
            Ok(request)
        })
    }
}

fn classify(e: &DbError) -> Verdict {
    match e {
        DbError::Reset => Verdict::transient(ErrorClass::Connection),
        DbError::Unique => Verdict::Permanent,
    }
}

fn layer() -> RetryLayer<fn(&DbError) -> Verdict> {
    let classify: fn(&DbError) -> Verdict = classify;
    RetryLayer::new(
        Retrier::builder(RetryPolicy::default())
            .classifier(classify)
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn failed_calls_are_reissued_after_readiness() {
    let inner = Flaky::new(2, || DbError::Reset);
    let mut svc = layer().layer(inner.clone());
    let response = svc
        .ready()
        .await
        .unwrap()
        .call("SELECT 1".into())
        .await
        .unwrap();
    assert_eq!(response, "SELECT 1");
    assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    assert_eq!(inner.readies.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_come_back_unchanged() {
    let inner = Flaky::new(1, || DbError::Unique);
    let mut svc = layer().layer(inner.clone());
    let err: BoxError = svc
        .ready()
        .await
        .unwrap()
        .call("INSERT".into())
        .await
        .unwrap_err();
    assert_eq!(err.downcast_ref::<DbError>(), Some(&DbError::Unique));
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn giving_up_says_why_and_keeps_the_last_error() {
    let inner = Flaky::new(u32::MAX, || DbError::Reset);
    let mut svc = layer().layer(inner.clone());
    let started = tokio::time::Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call("SELECT 1".into())
        .await
        .unwrap_err();
    let gave_up = err.downcast_ref::<GaveUpError>().expect("a GaveUpError");
    assert_eq!(
        (gave_up.reason(), gave_up.attempts()),
        (GaveUp::Exhausted, 3)
    );
    let source = std::error::Error::source(gave_up).unwrap();
    assert_eq!(source.downcast_ref::<DbError>(), Some(&DbError::Reset));
    assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() <= Duration::from_millis(300 + 2),
        "full jitter stays under the curve"
    );
}
