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

/// Calls `svc` once with `SELECT 1`, expecting the retries to give up.
async fn give_up_once<S>(svc: &mut S) -> Box<GaveUpError>
where
    S: Service<String, Error = BoxError>,
    S::Response: std::fmt::Debug,
{
    svc.ready()
        .await
        .unwrap()
        .call("SELECT 1".into())
        .await
        .unwrap_err()
        .downcast::<GaveUpError>()
        .expect("a GaveUpError")
}

#[tokio::test(start_paused = true)]
async fn giving_up_says_why_and_keeps_the_last_error() {
    let inner = Flaky::new(u32::MAX, || DbError::Reset);
    let mut svc = layer().layer(inner.clone());
    let started = tokio::time::Instant::now();
    let gave_up = give_up_once(&mut svc).await;
    assert_eq!(
        (gave_up.reason(), gave_up.attempts()),
        (GaveUp::Exhausted, 3)
    );
    let source = std::error::Error::source(&*gave_up).unwrap();
    assert_eq!(source.downcast_ref::<DbError>(), Some(&DbError::Reset));
    assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() <= Duration::from_millis(300 + 2),
        "full jitter stays under the curve"
    );
}

/// Each call waits `wait` on tokio's clock, then fails with a reset.
#[derive(Clone)]
struct Slow {
    wait: Duration,
    calls: Arc<AtomicU32>,
}

impl Service<String> for Slow {
    type Response = String;
    type Error = DbError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<String, DbError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DbError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: String) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let wait = self.wait;
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            Err(DbError::Reset)
        })
    }
}

/// Up to 10 attempts within 10 s, sleeping from `base` doubling up to
/// `max_delay`, without jitter.
fn within_10s(base: Duration, max_delay: Duration) -> RetryLayer<fn(&DbError) -> Verdict> {
    let classify: fn(&DbError) -> Verdict = classify;
    let schedule = keel_retry::Schedule::new(10, base)
        .with_max_delay(max_delay)
        .with_jitter(keel_retry::Jitter::None);
    RetryLayer::new(
        Retrier::builder(
            RetryPolicy::default()
                .with_class(ErrorClass::Connection, schedule)
                .with_total_timeout(Duration::from_secs(10)),
        )
        .classifier(classify)
        .build()
        .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_counts_the_first_attempt_s_wait() {
    let inner = Slow {
        wait: Duration::from_secs(4),
        calls: Arc::default(),
    };
    let delays = within_10s(Duration::from_millis(100), Duration::from_millis(200));
    let mut svc = delays.layer(inner.clone());
    let gave_up = give_up_once(&mut svc).await;
    // Attempts fail at 4 s, 8.1 s and 12.3 s: past 10 s, counted from the
    // first attempt's start (from its failure, a fourth would run).
    assert_eq!(
        (gave_up.reason(), gave_up.attempts()),
        (GaveUp::Deadline, 3)
    );
    assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_holds_for_calls_that_fail_at_once() {
    let inner = Flaky::new(u32::MAX, || DbError::Reset);
    let mut svc = within_10s(Duration::from_secs(3), Duration::from_secs(3)).layer(inner.clone());
    let started = tokio::time::Instant::now();
    let gave_up = give_up_once(&mut svc).await;
    // Attempts at 0 s, 3 s, 6 s, 9 s; a fourth sleep would end at 12 s.
    assert_eq!(
        (gave_up.reason(), gave_up.attempts()),
        (GaveUp::Deadline, 4)
    );
    assert_eq!(started.elapsed(), Duration::from_secs(9));
}
