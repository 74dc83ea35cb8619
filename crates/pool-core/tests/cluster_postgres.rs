//! A cluster over the real PostgreSQL at 127.0.0.1:5432 and MariaDB at
//! 127.0.0.1:3306: libpq's multi-host URL, routing by what each server
//! says of itself (a session forced read-only stands in for a standby's
//! read-only half), and an endpoint that is down from the start.
#![cfg(all(feature = "cluster", feature = "postgres", feature = "mysql"))]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use keel_pool_core::cluster::{Access, Cluster, ClusterError, ClusterUrl, TargetSessionAttrs};
use keel_pool_core::{DatabaseUrl, Manager, MySqlManager, PgManager, ServerState};

/// The same server under two names, the first with every session
/// read-only; then a port nothing listens on.
const URL: &str = "postgres://postgres@localhost:5432,127.0.0.1:5432,127.0.0.1:1/test\
                   ?target_session_attrs=read-write&connect_timeout=2";

async fn cluster() -> Cluster<PgManager> {
    let url: ClusterUrl = URL.parse().unwrap();
    let mut endpoints = url.endpoints().iter();
    // The first host gets read-only sessions (`options`): a server that
    // takes no writes, though it is declared the primary.
    let read_only: DatabaseUrl =
        "postgres://postgres@localhost:5432/test?options=-c%20default_transaction_read_only%3Don"
            .parse()
            .unwrap();
    let _ = endpoints.next();
    let mut builder = Cluster::builder().endpoint(
        PgManager::from_url(&read_only).unwrap(),
        keel_pool_core::cluster::Role::Primary,
    );
    for e in endpoints {
        builder = builder.endpoint(
            PgManager::from_url(e).unwrap(),
            keel_pool_core::cluster::Role::Replica,
        );
    }
    builder.build().await.unwrap()
}

async fn read_only(conn: &mut sqlx::PgConnection) -> String {
    sqlx::query_scalar("SHOW transaction_read_only")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_url_splits_into_one_manager_per_host_and_keeps_the_attrs() {
    let url: ClusterUrl = URL.parse().unwrap();
    assert_eq!(url.target_session_attrs(), TargetSessionAttrs::ReadWrite);
    let c = Cluster::builder().url(&url).unwrap().build().await.unwrap();
    assert_eq!(
        c.config().target_session_attrs,
        TargetSessionAttrs::ReadWrite
    );
    let names: Vec<String> = c.endpoints().into_iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "localhost:5432/test",
            "127.0.0.1:5432/test",
            "127.0.0.1:1/test"
        ]
    );
    let mut conn = c.get(Access::Write).await.unwrap();
    assert_eq!(read_only(&mut conn).await, "off");
}

#[tokio::test]
async fn writes_land_where_the_server_takes_them_and_the_down_host_is_reported() {
    let c = cluster().await;
    let report = c.endpoints();
    assert_eq!(
        report[0].role,
        Some(ServerState {
            in_recovery: false,
            read_only: true
        }),
        "{report:?}"
    );
    assert_eq!(report[1].role, Some(ServerState::PRIMARY));
    assert!(
        report[2].role.is_none() && report[2].last_error.is_some(),
        "{report:?}"
    );
    assert!(!report[2].is_up());
    // Declared primary, but its sessions are read-only: writes go to the
    // other name, every time.
    for _ in 0..5 {
        let mut conn = c.get(Access::Write).await.unwrap();
        assert_eq!(conn.endpoint(), "127.0.0.1:5432/test");
        assert_eq!(read_only(&mut conn).await, "off");
        sqlx::query("CREATE TEMP TABLE IF NOT EXISTS t (x int)")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let mut conn = c.get_for(TargetSessionAttrs::ReadOnly).await.unwrap();
    assert_eq!(read_only(&mut conn).await, "on");
    drop(conn);
    // Only the dead host is a standby candidate (declared a replica):
    // the error names it and the server's refusal.
    let err = c.get_for(TargetSessionAttrs::Standby).await.unwrap_err();
    assert!(matches!(err, ClusterError::Pool { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1/test"), "{err}");
}

#[tokio::test]
async fn mariadb_says_whether_it_is_read_only() {
    let url: DatabaseUrl = "mysql://root@127.0.0.1:3306/test".parse().unwrap();
    let m = MySqlManager::from_url(&url).unwrap();
    let mut conn = m.connect().await.unwrap();
    let state = m.server_state(&mut conn).await.unwrap();
    assert_eq!(state, Some(ServerState::PRIMARY));
}

#[tokio::test]
async fn a_primary_reports_no_replay_lag() {
    let url: DatabaseUrl = "postgres://postgres@127.0.0.1:5432/test".parse().unwrap();
    let m = PgManager::from_url(&url).unwrap();
    let mut conn = m.connect().await.unwrap();
    assert_eq!(m.replay_lag(&mut conn).await.unwrap(), None);
    assert_eq!(
        m.server_state(&mut conn).await.unwrap(),
        Some(ServerState::PRIMARY)
    );
}
