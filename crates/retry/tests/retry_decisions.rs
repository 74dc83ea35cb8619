//! What gets retried, what does not, and what the caller is told.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_retry::{
    BudgetConfig, Delivery, ErrorClass, Event, Failure, GaveUp, Idempotency, Retrier,
    RetrierBuilder, RetryBudget, RetryPolicy, Verdict,
};

/// A failure whose verdict is scripted.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scripted(Verdict);

impl std::fmt::Display for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "scripted failure ({:?})", self.0)
    }
}

/// An operation that fails with the given verdicts in turn, then succeeds.
type ByScript = fn(&Scripted) -> Verdict;

#[allow(clippy::type_complexity, reason = "a test helper's tuple")]
fn script(
    verdicts: Vec<Verdict>,
) -> (
    Retrier<ByScript>,
    Arc<AtomicU32>,
    impl FnMut() -> std::future::Ready<Result<u32, Scripted>>,
) {
    script_with(verdicts, |b| b)
}

/// [`script`], with the retrier's builder customised.
#[allow(clippy::type_complexity, reason = "a test helper's tuple")]
fn script_with(
    verdicts: Vec<Verdict>,
    customise: impl FnOnce(RetrierBuilder<ByScript>) -> RetrierBuilder<ByScript>,
) -> (
    Retrier<ByScript>,
    Arc<AtomicU32>,
    impl FnMut() -> std::future::Ready<Result<u32, Scripted>>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let op = move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
        std::future::ready(match verdicts.get(n) {
            Some(v) => Err(Scripted(*v)),
            None => Ok(n as u32 + 1),
        })
    };
    let classify: ByScript = |s| s.0;
    let retrier =
        customise(Retrier::builder(RetryPolicy::default().with_seed(1)).classifier(classify))
            .build()
            .unwrap();
    (retrier, calls, op)
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_until_success() {
    let (retrier, calls, op) = script(vec![Verdict::transient(ErrorClass::Other); 2]);
    assert_eq!(retrier.run(op).await.unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_return_at_once() {
    let (retrier, calls, op) = script(vec![Verdict::Permanent]);
    let err = retrier.run(op).await.unwrap_err();
    assert_eq!((err.reason(), err.attempts()), (GaveUp::Permanent, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(
        err.failure(),
        Failure::Inner(Scripted(Verdict::Permanent))
    ));
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_work_is_retried_only_when_the_attempt_had_no_effect() {
    let (retrier, calls, op) = script_with(
        vec![
            Verdict::no_effect(ErrorClass::Connection),
            Verdict::transient(ErrorClass::Connection),
        ],
        |b| b.idempotency(Idempotency::NonIdempotent),
    );
    let err = retrier.run(op).await.unwrap_err();
    assert_eq!((err.reason(), err.attempts()), (GaveUp::NotIdempotent, 2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(err.to_string().contains("not idempotent"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_outcome_is_never_retried_and_says_so() {
    let (retrier, calls, op) = script(vec![Verdict::OutcomeUnknown]);
    let err = retrier.run(op).await.unwrap_err();
    assert_eq!(err.reason(), GaveUp::OutcomeUnknown);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(err.to_string().contains("outcome is unknown"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_hints_are_honoured() {
    let hint = Verdict::RetryAfter {
        after: Duration::from_secs(7),
        class: ErrorClass::Exhausted,
        delivery: Delivery::NoEffect,
    };
    let (retrier, _, op) = script(vec![hint]);
    let start = tokio::time::Instant::now();
    retrier.run(op).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_millis(7002),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_stops_before_a_sleep_would_pass_it() {
    let (retrier, calls, op) = script(vec![
        Verdict::RetryAfter {
            after: Duration::from_secs(3),
            class: ErrorClass::Other,
            delivery: Delivery::NoEffect,
        };
        5
    ]);
    let retrier = Retrier::builder(
        RetryPolicy::default()
            .with_default(keel_retry::Schedule::new(10, Duration::from_millis(100)))
            .with_total_timeout(Duration::from_secs(10)),
    )
    .classifier(*retrier.classifier())
    .build()
    .unwrap();
    let err = retrier.run(op).await.unwrap_err();
    // Attempts at 0 s, 3 s, 6 s, 9 s; a fourth sleep would end at 12 s.
    assert_eq!((err.reason(), err.attempts()), (GaveUp::Deadline, 4));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_times_out_and_is_retried() {
    let calls = AtomicU32::new(0);
    let retrier =
        Retrier::new(RetryPolicy::default().with_attempt_timeout(Duration::from_secs(1))).unwrap();
    let result = retrier
        .run(|| async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                std::future::pending::<()>().await;
            }
            Ok::<_, ()>("done")
        })
        .await;
    assert_eq!(result.unwrap(), "done");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let always_hangs = retrier
        .run(std::future::pending::<Result<(), ()>>)
        .await
        .unwrap_err();
    assert!(matches!(always_hangs.failure(), Failure::TimedOut(d) if *d == Duration::from_secs(1)));
    assert_eq!(
        (always_hangs.reason(), always_hangs.attempts()),
        (GaveUp::Exhausted, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_returns_the_original_error_marked() {
    let budget = RetryBudget::new(BudgetConfig::new(Duration::from_secs(10), 0, 0.5)).unwrap();
    let retrier = Retrier::builder(
        RetryPolicy::default().with_default(keel_retry::Schedule::new(5, Duration::from_millis(1))),
    )
    .budget(budget.clone())
    .build()
    .unwrap();
    // Two successful requests deposit enough for exactly one retry.
    for _ in 0..2 {
        retrier.run(|| async { Ok::<_, &str>(()) }).await.unwrap();
    }
    let err = retrier
        .run(|| async { Err::<(), _>("db down") })
        .await
        .unwrap_err();
    // 3 requests × 0.5 = 1.5 retries: one granted, the next refused.
    assert_eq!((err.reason(), err.attempts()), (GaveUp::Budget, 2));
    assert_eq!(err.inner(), Some(&"db down"));
    assert!(err.to_string().contains("retry budget"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn observers_see_every_step() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let (retrier, _, op) = script_with(
        vec![Verdict::transient(ErrorClass::Conflict), Verdict::Permanent],
        |b| b.observer(move |e: &Event| sink.lock().unwrap().push(*e)),
    );
    let _ = retrier.run(op).await;
    let events = events.lock().unwrap();
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::AttemptFailed {
                    attempt: 1,
                    class: Some(ErrorClass::Conflict)
                },
                Event::RetryScheduled { attempt: 1, .. },
                Event::AttemptFailed {
                    attempt: 2,
                    class: None
                },
                Event::GaveUp {
                    attempts: 2,
                    reason: GaveUp::Permanent
                },
            ]
        ),
        "{events:?}"
    );
}

#[test]
fn bad_policies_name_the_field() {
    let policy = RetryPolicy::default().with_class(
        ErrorClass::Conflict,
        keel_retry::Schedule::new(0, Duration::from_millis(10)),
    );
    assert_eq!(
        Retrier::new(policy).unwrap_err().field(),
        "conflict.max_attempts"
    );
    let policy =
        RetryPolicy::default().with_default(keel_retry::Schedule::new(3, Duration::from_secs(20)));
    let err = policy.validate().unwrap_err();
    assert_eq!(err.field(), "default.base");
    assert!(err.to_string().contains("max_delay"), "{err}");
    let err = toml::from_str::<RetryPolicy>("attempts = 3").unwrap_err();
    assert!(err.to_string().contains("attempts"), "{err}");
}

/// A user's own schedule: 1 s, then 2 s, then stop.
struct Steps(Vec<Duration>);
impl keel_retry::Backoff for Steps {
    fn next_delay(&mut self, _class: ErrorClass) -> Option<Duration> {
        (!self.0.is_empty()).then(|| self.0.remove(0))
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_backoff_replaces_the_schedule() {
    let (retrier, calls, op) = script(vec![Verdict::transient(ErrorClass::Other); 10]);
    let retrier = Retrier::builder(
        RetryPolicy::default()
            .with_default(keel_retry::Schedule::new(10, Duration::from_millis(1))),
    )
    .classifier(*retrier.classifier())
    .backoff(|| Steps(vec![Duration::from_secs(1), Duration::from_secs(2)]))
    .build()
    .unwrap();
    let start = tokio::time::Instant::now();
    let err = retrier.run(op).await.unwrap_err();
    assert_eq!((err.reason(), err.attempts()), (GaveUp::Exhausted, 3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3005),
        "{waited:?}"
    );
}
