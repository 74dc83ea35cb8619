//! The leaf crates' observers, read back through a parsed scrape.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use keel_breaker::{BreakerConfig, CircuitBreaker, Event as BreakerEvent, Observer as _};
use keel_retry::{Retrier, RetryPolicy};
use keel_session_store::{MemoryStore, NewSession, SessionStore, StoreConfig};
use keel_telemetry::{BreakerGauges, BreakerMetrics, Collect, RetryMetrics, SessionMetrics};

use common::{local, scrape, value};

#[tokio::test(flavor = "current_thread")]
async fn breaker_transitions_rejections_and_state() {
    let metrics = local();
    let breaker = CircuitBreaker::builder(BreakerConfig::default())
        .name("orders")
        .observer(BreakerMetrics::new())
        .build()
        .unwrap();
    let gauges = BreakerGauges::new(breaker.clone());
    breaker.force_open();
    for _ in 0..3 {
        assert!(breaker.try_acquire().is_err());
    }
    breaker.reset();
    gauges.collect();
    let s = scrape(&metrics.render());
    let t = "keel_breaker_transitions_total";
    assert_eq!(
        value(
            &s,
            t,
            &[
                ("name", "orders"),
                ("from", "closed"),
                ("to", "forced_open")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            t,
            &[
                ("name", "orders"),
                ("from", "forced_open"),
                ("to", "closed")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, t, &[("from", "open")]),
        None,
        "unused transitions make no series"
    );
    assert_eq!(
        value(&s, "keel_breaker_rejections_total", &[("name", "orders")]),
        Some(3.0)
    );
    let state = "keel_breaker_state";
    assert_eq!(
        value(&s, state, &[("name", "orders"), ("state", "closed")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, state, &[("name", "orders"), ("state", "forced_open")]),
        Some(0.0)
    );
    // A second breaker under another name shares the observer.
    let other = BreakerMetrics::new();
    other.on_event(&BreakerEvent::Rejected {
        name: "users",
        state: keel_breaker::State::Open,
        retry_after: None,
    });
    let s = scrape(&metrics.render());
    assert_eq!(
        value(&s, "keel_breaker_rejections_total", &[("name", "users")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_and_give_ups_by_class_and_reason() {
    let metrics = local();
    let policy = RetryPolicy::default();
    let retrier = Retrier::builder(policy)
        .classifier(|e: &std::io::Error| keel_retry::classify_io(e))
        .observer(RetryMetrics::new("orders"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let result: Result<(), _> = retrier
        .run(|| {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            }
        })
        .await;
    assert!(result.is_err());
    let attempts = f64::from(calls.load(Ordering::SeqCst));
    let s = scrape(&metrics.render());
    let failed = value(
        &s,
        "keel_retry_attempts_failed_total",
        &[("name", "orders"), ("class", "connection")],
    );
    assert_eq!(failed, Some(attempts));
    assert_eq!(
        value(&s, "keel_retry_retries_total", &[("name", "orders")]),
        Some(attempts - 1.0)
    );
    let gave_up: f64 = ["exhausted", "deadline"]
        .iter()
        .map(|r| {
            value(
                &s,
                "keel_retry_give_ups_total",
                &[("name", "orders"), ("reason", r)],
            )
            .unwrap()
        })
        .sum();
    assert_eq!(gave_up, 1.0);
}

#[tokio::test(flavor = "current_thread")]
async fn session_store_operations() {
    let metrics = local();
    let store = MemoryStore::builder(StoreConfig::default())
        .name("web")
        .observer(SessionMetrics::new())
        .build()
        .unwrap();
    let a = store
        .create(NewSession::new("alice", "http"))
        .await
        .unwrap();
    let b = store.create(NewSession::new("bob", "http")).await.unwrap();
    store.delete(&a.id).await.unwrap();
    let stale = b.version;
    store.update(&b.id, stale, b.data.clone()).await.unwrap();
    assert!(store.update(&b.id, stale, b.data.clone()).await.is_err());
    let s = scrape(&metrics.render());
    let op = |operation| {
        value(
            &s,
            "keel_session_operations_total",
            &[("name", "web"), ("operation", operation)],
        )
    };
    assert_eq!(op("created"), Some(2.0));
    assert_eq!(op("deleted"), Some(1.0));
    assert_eq!(op("conflict"), Some(1.0));
}
