//! `ClusterCheck` over clusters of the real PostgreSQL at 127.0.0.1:5432:
//! all endpoints serving, one unreachable, none taking writes, none at all.
#![cfg(feature = "cluster")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use keel_health::checks::ClusterCheck;
use keel_health::{HealthCheck, Status};
use keel_pool_core::cluster::{Cluster, ClusterUrl};
use keel_pool_core::{DatabaseUrl, PgManager};

async fn cluster(hosts: &str) -> Cluster<PgManager> {
    let url: ClusterUrl = format!("postgres://postgres@{hosts}/test?connect_timeout=2")
        .parse()
        .unwrap();
    Cluster::builder().url(&url).unwrap().build().await.unwrap()
}

#[tokio::test]
async fn every_endpoint_serving_is_healthy_and_listed() {
    let check = ClusterCheck::new(cluster("127.0.0.1:5432,localhost:5432").await);
    let outcome = check.check().await;
    assert_eq!(outcome.status(), Status::Healthy, "{outcome:?}");
    let endpoints = outcome.details()["endpoints"].as_array().unwrap().clone();
    assert_eq!(endpoints.len(), 2);
    assert!(
        endpoints
            .iter()
            .all(|e| e["serving"] == true && e["role"] == "primary")
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_degrades_it_and_is_named() {
    let outcome = ClusterCheck::new(cluster("127.0.0.1:5432,127.0.0.1:1").await)
        .check()
        .await;
    assert_eq!(outcome.status(), Status::Degraded, "{outcome:?}");
    assert!(
        outcome.message().unwrap().contains("127.0.0.1:1/test"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn no_endpoint_taking_writes_is_unhealthy_unless_only_reads_are_asked() {
    // Every session of this endpoint is read-only: it serves reads only.
    let url: DatabaseUrl =
        "postgres://postgres@127.0.0.1:5432/test?options=-c%20default_transaction_read_only%3Don"
            .parse()
            .unwrap();
    let read_only = Cluster::builder()
        .endpoint(
            PgManager::from_url(&url).unwrap(),
            keel_pool_core::cluster::Role::Primary,
        )
        .build()
        .await
        .unwrap();
    let outcome = ClusterCheck::new(read_only.clone()).check().await;
    assert_eq!(outcome.status(), Status::Unhealthy, "{outcome:?}");
    assert!(
        outcome
            .message()
            .unwrap()
            .contains("no endpoint takes writes")
    );
    let outcome = ClusterCheck::new(read_only).reads_only().check().await;
    assert_eq!(outcome.status(), Status::Healthy, "{outcome:?}");
}

#[tokio::test]
async fn no_endpoint_at_all_is_unhealthy() {
    let outcome = ClusterCheck::new(cluster("127.0.0.1:1").await)
        .reads_only()
        .check()
        .await;
    assert_eq!(outcome.status(), Status::Unhealthy, "{outcome:?}");
    assert!(outcome.message().unwrap().contains("no endpoint serves"));
    assert!(!format!("{outcome:?}").contains("password"));
}
