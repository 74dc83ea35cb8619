//! The cluster's tower service: where operations go, and what counts
//! against an endpoint.

use std::time::Duration;

use tower::ServiceExt as _;

use super::tests::{Down, primary_and_two_replicas, quiet};
use super::*;
use crate::op::{self, BoxError};

/// An operation answering with its server's name, or failing on `fail_on`
/// with `Down` (a broken connection) or a plain error (a database error).
fn name_unless(
    fail_on: &'static str,
    broken: bool,
) -> impl op::Operation<&'static str, Output = &'static str> {
    op::with_connection(move |conn: &mut &'static str| {
        let server = *conn;
        Box::pin(async move {
            match (server == fail_on, broken) {
                (false, _) => Ok(server),
                (true, true) => Err(BoxError::from(Down(server))),
                (true, false) => Err(BoxError::from("duplicate key value")),
            }
        })
    })
}

#[tokio::test]
async fn read_only_operations_go_to_replicas_and_the_rest_to_the_primary() {
    let (_p, _r1, _r2, c) = primary_and_two_replicas(quiet()).await;
    let svc = c.service();
    for _ in 0..4 {
        let name = svc.clone().oneshot(name_unless("", false)).await.unwrap();
        assert_eq!(name, "p");
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let read = op::read_only(name_unless("", false));
        seen.push(svc.clone().oneshot(read).await.unwrap());
    }
    assert_eq!(seen.iter().filter(|n| **n == "r1").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|n| **n == "r2").count(), 2, "{seen:?}");
    assert!(c.endpoints().iter().all(|e| e.in_use == 0));
}

#[tokio::test]
async fn broken_connections_eject_an_endpoint_and_database_errors_do_not() {
    let (_p, _r1, _r2, c) = primary_and_two_replicas(quiet()).await;
    let svc = c.service();
    for _ in 0..20 {
        let _ = svc
            .clone()
            .oneshot(op::read_only(name_unless("r1", false)))
            .await;
    }
    assert!(
        c.endpoints().iter().all(|e| !e.ejected),
        "a database error is the caller's: {:?}",
        c.endpoints()
    );
    for _ in 0..20 {
        let _ = svc
            .clone()
            .oneshot(op::read_only(name_unless("r1", true)))
            .await;
    }
    let report = c.endpoints();
    let ejected: Vec<_> = report.iter().filter(|e| e.ejected).collect();
    assert_eq!(ejected.len(), 1, "{report:?}");
    assert_eq!(ejected[0].name, "r1");
    // Out of rotation: reads now all land on r2.
    for _ in 0..4 {
        let read = op::read_only(name_unless("r1", true));
        assert_eq!(svc.clone().oneshot(read).await.unwrap(), "r2");
    }
}

#[tokio::test(start_paused = true)]
async fn a_missed_deadline_counts_against_the_endpoint_and_a_cancelled_call_does_not() {
    let (_p, _r1, _r2, c) = primary_and_two_replicas(quiet()).await;
    let svc = c.service();
    let stall = op::with_connection(|_: &mut &'static str| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, BoxError>(())
        })
    });
    // Cancelled by the caller, many times over: no verdict on the primary.
    for _ in 0..10 {
        let call = svc.clone().oneshot(stall.clone());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), call)
                .await
                .is_err()
        );
    }
    let primary = |c: &Cluster<_>| c.endpoints().into_iter().find(|e| e.name == "p").unwrap();
    assert!(!primary(&c).ejected);
    assert_eq!(primary(&c).in_use, 0, "cancelled checkouts are settled");
    // Its own deadline missed five times in a row: the primary is at
    // fault, and writes fail fast until a refresh finds it answering.
    for _ in 0..5 {
        let err = svc
            .clone()
            .oneshot(stall.clone().timeout(Duration::from_millis(10)))
            .await
            .unwrap_err();
        assert!(err.is::<op::CommandTimeout>(), "{err}");
    }
    assert!(primary(&c).ejected, "{:?}", c.endpoints());
    let err = svc.clone().oneshot(stall.clone()).await.unwrap_err();
    assert!(err.to_string().contains("p (primary, ejected)"), "{err}");
}
