//! What `TelemetryLayer` records, read back through a Prometheus scrape
//! parsed with a text-format parser.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use keel_breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer};
use keel_telemetry::TelemetryLayer;
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

use common::{local, scrape, value};

async fn answer(request: u32) -> Result<u32, BoxError> {
    match request {
        0 => Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()),
        1 => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        2 => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(2)
        }
        n => Ok(n),
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn outcomes_errors_and_in_flight_calls_are_counted() {
    let metrics = local();
    let layer = TelemetryLayer::new("orders").db_system("postgresql");
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(answer));

    for n in 3..13 {
        assert_eq!(svc.clone().oneshot(n).await.unwrap(), n);
    }
    let reset = svc.clone().oneshot(0).await.unwrap_err();
    assert!(
        reset.downcast_ref::<std::io::Error>().is_some(),
        "the error passes unchanged"
    );
    svc.clone().oneshot(1).await.unwrap_err();
    // A call dropped mid-way is counted once, as cancelled, and leaves flight.
    let slow = tokio::time::timeout(Duration::from_secs(1), svc.clone().oneshot(2)).await;
    assert!(slow.is_err());

    let s = scrape(&metrics.render());
    let duration = "db_client_operation_duration_seconds_count";
    let by = |outcome| value(&s, duration, &[("name", "orders"), ("outcome", outcome)]);
    assert_eq!(by("ok"), Some(10.0));
    assert_eq!(by("error"), Some(1.0));
    assert_eq!(by("timeout"), Some(1.0));
    assert_eq!(by("cancelled"), Some(1.0));
    assert_eq!(by("rejected"), Some(0.0));
    let errors = "keel_operation_errors_total";
    assert_eq!(
        value(&s, errors, &[("error_type", "connection")]),
        Some(1.0)
    );
    assert_eq!(value(&s, errors, &[("error_type", "timeout")]), Some(1.0));
    assert_eq!(
        value(&s, "keel_operation_in_flight", &[("name", "orders")]),
        Some(0.0)
    );
    // Help text and unit reach the scrape.
    assert!(
        s.docs.contains_key("db_client_operation_duration_seconds"),
        "{:?}",
        s.docs
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_the_breaker_turns_away_is_rejected_not_failed() {
    let metrics = local();
    let breaker = CircuitBreaker::new(BreakerConfig::default()).unwrap();
    breaker.force_open();
    let svc = ServiceBuilder::new()
        .layer(TelemetryLayer::new("rejecting"))
        .layer(CircuitBreakerLayer::new(breaker))
        .service(service_fn(answer));
    svc.oneshot(5).await.unwrap_err();
    let s = scrape(&metrics.render());
    let duration = "db_client_operation_duration_seconds_count";
    assert_eq!(
        value(
            &s,
            duration,
            &[("name", "rejecting"), ("outcome", "rejected")]
        ),
        Some(1.0)
    );
    let errors = "keel_operation_errors_total";
    assert_eq!(
        value(
            &s,
            errors,
            &[("name", "rejecting"), ("error_type", "breaker_open")]
        ),
        Some(1.0)
    );
}

/// Labels never carry the request: 100 000 distinct statements leave the
/// series count where ten left it.
#[tokio::test(flavor = "current_thread")]
async fn the_series_count_stays_flat_over_100k_distinct_statements() {
    let metrics = local();
    let svc = ServiceBuilder::new()
        .layer(TelemetryLayer::new("flat"))
        .service(service_fn(|sql: String| async move {
            if sql.ends_with('7') {
                Err::<usize, BoxError>(std::io::Error::other(sql).into())
            } else {
                Ok(sql.len())
            }
        }));
    let series = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count()
    };
    for i in 0..10 {
        let _ = svc
            .clone()
            .oneshot(format!("SELECT * FROM t WHERE id = {i}"))
            .await;
    }
    let after_ten = series(&metrics.render());
    for i in 10..100_000 {
        let _ = svc
            .clone()
            .oneshot(format!("SELECT * FROM t WHERE id = {i}"))
            .await;
    }
    let text = metrics.render();
    assert_eq!(series(&text), after_ten);
    assert!(!text.contains("SELECT"));
    let s = scrape(&text);
    let total: f64 = ["ok", "error"]
        .iter()
        .map(|o| {
            value(
                &s,
                "db_client_operation_duration_seconds_count",
                &[("name", "flat"), ("outcome", o)],
            )
            .unwrap()
        })
        .sum();
    assert_eq!(total, 100_000.0);
}
