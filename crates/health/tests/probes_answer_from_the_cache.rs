//! Probes answer at once from cached results, whatever the checks do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use keel_health::{
    Detail, Event, HealthConfig, HealthRegistry, HealthService, Outcome, Signal, Status,
};
use tower::ServiceExt;

fn schedule(interval: u64, timeout: u64) -> HealthConfig {
    HealthConfig::new(Duration::from_secs(interval), Duration::from_secs(timeout))
}

async fn get(service: &HealthService, path: &str) -> (StatusCode, serde_json::Value) {
    let response = service
        .clone()
        .oneshot(Request::get(path).body(()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_slow_check_and_a_failing_check_are_served_from_the_cache() {
    let health = HealthRegistry::builder(schedule(30, 5))
        .check("fast", || async {
            Outcome::healthy().with_detail("rows", 3)
        })
        .check("failing", || async {
            Outcome::unhealthy("connection refused (127.0.0.1:1)")
        })
        .check_with(
            "slow",
            || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Outcome::healthy()
            },
            schedule(60, 2),
        )
        .version("1.2.3")
        .build()
        .unwrap();
    let probes = HealthService::new(health.clone());

    // Before any run finished: not ready, and the probe does not wait.
    let (code, body) = get(&probes, "/health/ready").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);

    health.refresh().await;
    let (code, body) = get(&probes, "/health/ready").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unhealthy");

    let (code, report) = get(&probes, "/health/detailed").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(report["status"], "unhealthy");
    assert_eq!(report["version"], "1.2.3");
    let checks = report["checks"].as_array().unwrap();
    let by_name = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(by_name("fast")["status"], "healthy");
    assert_eq!(by_name("fast")["details"]["rows"], 3);
    assert!(by_name("fast")["last_run"].as_str().unwrap().ends_with('Z'));
    assert_eq!(by_name("failing")["status"], "unhealthy");
    assert_eq!(
        by_name("failing")["message"],
        "connection refused (127.0.0.1:1)"
    );
    let slow = by_name("slow");
    assert_eq!(slow["status"], "unhealthy");
    assert_eq!(slow["message"], "the check timed out after 2s");
    assert!(slow["latency_ms"].as_f64().unwrap() >= 2000.0);
    assert!(["failing", "slow"].contains(&report["decided_by"].as_str().unwrap()));

    // Liveness is about the process, not its dependencies.
    let (code, body) = get(&probes, "/health").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (StatusCode::OK, Some("alive"))
    );
}

#[tokio::test(start_paused = true)]
async fn drain_turns_readiness_off_and_leaves_liveness_on() {
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let health = HealthRegistry::builder(schedule(30, 5))
        .check("db", || async { Outcome::healthy() })
        .observer(move |e: &Event<'_>| seen.lock().unwrap().push(format!("{e:?}")))
        .build()
        .unwrap();
    health.refresh().await;
    let probes = HealthService::new(health.clone());
    assert_eq!(get(&probes, "/health/ready").await.0, StatusCode::OK);

    health.drain();
    let (code, body) = get(&probes, "/health/ready").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("draining"))
    );
    assert_eq!(get(&probes, "/health/live").await.0, StatusCode::OK);
    assert_eq!(get(&probes, "/health/detailed").await.1["draining"], true);
    assert!(events.lock().unwrap().iter().any(|e| e == "Draining"));
}

#[tokio::test(start_paused = true)]
async fn a_signal_decides_at_once_and_says_so() {
    let signal = Signal::new();
    let health = HealthRegistry::builder(schedule(3600, 5))
        .check("db", || async { Outcome::healthy() })
        .signal("orders breaker", &signal)
        .build()
        .unwrap();
    health.refresh().await;
    assert_eq!(health.status(), Status::Healthy);
    assert_eq!(health.report().decided_by, None);

    signal.set(Outcome::unhealthy("orders is open"));
    assert!(!health.is_ready());
    let report = health.report();
    assert_eq!(report.decided_by.as_deref(), Some("orders breaker"));
    let entry = report
        .entries
        .iter()
        .find(|e| e.name == "orders breaker")
        .unwrap();
    assert_eq!(entry.message.as_deref(), Some("orders is open"));

    signal.set(Status::Degraded);
    assert_eq!(health.status(), Status::Degraded);
    assert!(health.is_ready());
}

#[tokio::test(start_paused = true)]
async fn detail_can_be_hidden_and_other_requests_are_refused() {
    let health = HealthRegistry::builder(schedule(30, 5))
        .check("db", || async {
            Outcome::unhealthy("db-7.internal refused").with_detail("host", "db-7.internal")
        })
        .build()
        .unwrap();
    health.refresh().await;
    let public = HealthService::new(health).detail(Detail::StatusOnly);
    let (code, body) = get(&public, "/health/detailed").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.get("checks").is_none(), "{body}");
    assert!(!body.to_string().contains("db-7"), "{body}");

    let response = public
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri("/health")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let response = public
        .oneshot(Request::get("/healthz").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(start_paused = true)]
async fn a_check_never_runs_twice_at_once() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let health = HealthRegistry::builder(HealthConfig::new(
        Duration::from_millis(100),
        Duration::from_millis(90),
    ))
    .check("slow", move || {
        let (r, m) = (Arc::clone(&r), Arc::clone(&m));
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(80)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Outcome::healthy()
        }
    })
    .build()
    .unwrap();
    let refreshes: Vec<_> = (0..16)
        .map(|_| {
            let health = health.clone();
            tokio::spawn(async move { health.refresh().await })
        })
        .collect();
    for r in refreshes {
        r.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(most.load(Ordering::SeqCst), 1);
    assert_eq!(health.status(), Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_check_is_unhealthy_and_keeps_being_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let health = HealthRegistry::builder(HealthConfig::new(
        Duration::from_secs(1),
        Duration::from_millis(500),
    ))
    .check("broken", move || {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            assert!(n > 0, "the first run panics");
            Outcome::healthy()
        }
    })
    .build()
    .unwrap();
    health.refresh().await;
    let report = health.report();
    assert_eq!(
        report.entries[0].message.as_deref(),
        Some("the check panicked")
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(health.status(), Status::Healthy);
    assert!(runs.load(Ordering::SeqCst) >= 2);
}

#[tokio::test(start_paused = true)]
async fn each_status_change_is_one_event() {
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let signal = Signal::new();
    let health = HealthRegistry::builder(schedule(30, 5))
        .signal("breaker", &signal)
        .observer(move |e: &Event<'_>| {
            if let Event::OverallChanged {
                from,
                to,
                decided_by,
            } = *e
            {
                seen.lock()
                    .unwrap()
                    .push((from, to, decided_by.map(str::to_owned)));
            }
        })
        .build()
        .unwrap();
    signal.set(Outcome::unhealthy("open"));
    signal.set(Outcome::unhealthy("still open"));
    signal.set(Status::Degraded);
    signal.set(Status::Healthy);
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            (
                Status::Healthy,
                Status::Unhealthy,
                Some("breaker".to_owned())
            ),
            (
                Status::Unhealthy,
                Status::Degraded,
                Some("breaker".to_owned())
            ),
            (Status::Degraded, Status::Healthy, None),
        ]
    );
    drop(health);
}
