//! keel-pool-core's cluster errors, from a real cluster over the real
//! PostgreSQL: a checkout no endpoint may serve never reached a server
//! and is retried, even for work that is not idempotent.
#![cfg(feature = "cluster")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use keel_pool_core::PgManager;
use keel_pool_core::cluster::{Cluster, ClusterUrl, TargetSessionAttrs};
use keel_retry::{Classify, ErrorClass, SqlxClassifier, Verdict};

#[tokio::test]
async fn no_endpoint_to_serve_is_retried_as_having_had_no_effect() {
    let url: ClusterUrl = "postgres://postgres@127.0.0.1:5432/test".parse().unwrap();
    let cluster: Cluster<PgManager> = Cluster::builder().url(&url).unwrap().build().await.unwrap();
    // The server is a primary: nothing serves a standby-only checkout, as
    // nothing serves a write mid-failover.
    let err = cluster
        .get_for(TargetSessionAttrs::Standby)
        .await
        .unwrap_err();
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    assert_eq!(
        SqlxClassifier.classify(&boxed),
        Verdict::no_effect(ErrorClass::Connection)
    );
}

#[tokio::test]
async fn an_endpoint_that_cannot_be_reached_is_judged_by_its_pool_error() {
    let url: ClusterUrl = "postgres://postgres@127.0.0.1:1/test?connect_timeout=1"
        .parse()
        .unwrap();
    let cluster: Cluster<PgManager> = Cluster::builder().url(&url).unwrap().build().await.unwrap();
    let err = cluster
        .get(keel_pool_core::cluster::Access::Write)
        .await
        .unwrap_err();
    assert!(err.pool_error().is_some(), "{err}");
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
    // Refused: the connect never reached a server.
    assert_eq!(
        SqlxClassifier.classify(&boxed),
        Verdict::no_effect(ErrorClass::Connection)
    );
}
