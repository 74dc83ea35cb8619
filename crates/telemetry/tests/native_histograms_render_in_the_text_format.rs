//! After `install()`, a layer's latency histogram is kept in its own
//! per-thread buckets and `MetricsService` writes it: the scrape parses,
//! buckets are cumulative, and count, sum and labels are right.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use keel_telemetry::{MetricsService, TelemetryLayer};
use prometheus_parse::{Scrape, Value};
use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};

#[tokio::test(flavor = "current_thread")]
async fn the_scrape_holds_the_layer_histogram() {
    let handle = keel_telemetry::install().unwrap();
    let name = "orders-eu";
    let svc = ServiceBuilder::new()
        .layer(TelemetryLayer::new(name))
        .service(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(ms)
        }));
    for ms in [0, 0, 1, 2, 3] {
        svc.clone().oneshot(ms).await.unwrap();
    }
    let metrics = MetricsService::new(handle);
    let text = metrics.render();
    // Rendering again neither double counts nor duplicates a series.
    let again = metrics.render();
    assert_eq!(text.lines().count(), again.lines().count());
    assert_eq!(
        text.matches("# TYPE db_client_operation_duration_seconds ")
            .count(),
        1
    );
    assert_eq!(ok_histogram(&again, name).last().unwrap().count, 5.0);

    let buckets = ok_histogram(&text, name);
    assert!(
        buckets.windows(2).all(|w| w[0].count <= w[1].count),
        "cumulative"
    );
    assert_eq!(buckets.last().unwrap().count, 5.0);
    assert!(buckets.last().unwrap().less_than.is_infinite());
    let at_least_6ms = buckets.iter().find(|b| b.less_than >= 0.006).unwrap().count;
    assert!(
        at_least_6ms >= 3.0,
        "three calls slept at least 1 ms: {buckets:?}"
    );
    let sum = sum_of(&text, name);
    assert!(sum >= 0.006, "the sleeps alone take 6 ms: {sum}");
}

fn ok_histogram(text: &str, name: &str) -> Vec<prometheus_parse::HistogramCount> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sample = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "db_client_operation_duration_seconds"
                && s.labels.get("name") == Some(name)
                && s.labels.get("outcome") == Some("ok")
        })
        .unwrap_or_else(|| panic!("no histogram in:\n{text}"));
    let Value::Histogram(buckets) = &sample.value else {
        panic!("not a histogram: {:?}", sample.value)
    };
    buckets.clone()
}

fn sum_of(text: &str, name: &str) -> f64 {
    let label = format!("name=\"{name}\",outcome=\"ok\"");
    let line = text
        .lines()
        .find(|l| l.starts_with("db_client_operation_duration_seconds_sum{") && l.contains(&label))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}
