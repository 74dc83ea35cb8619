//! Two named databases (PostgreSQL and SQLite) in one registry: each
//! serves; stopping one leaves the other serving.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use keel::sqlx::{self, PgConnection, SqliteConnection};
use keel::{DatabaseConfig, Databases, PgDatabase, Phase, SqliteDatabase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_one_database_leaves_the_other_serving() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("cache.db").display()
    );
    let pid = std::process::id();
    let (orders, cache) = (format!("orders-{pid}"), format!("cache-{pid}"));

    let databases = Databases::new();
    databases
        .start::<PgConnection>(
            DatabaseConfig::new("postgres://postgres@127.0.0.1:5432/test".parse().unwrap())
                .with_name(&orders),
        )
        .await
        .unwrap();
    databases
        .start::<SqliteConnection>(
            DatabaseConfig::new(sqlite_url.parse().unwrap()).with_name(&cache),
        )
        .await
        .unwrap();
    let mut names = vec![orders.clone(), cache.clone()];
    names.sort();
    assert_eq!(databases.names(), names);

    let pg: PgDatabase = databases.get(&orders).unwrap();
    let lite: SqliteDatabase = databases.get(&cache).unwrap();
    assert!(
        databases.get::<SqliteConnection>(&orders).is_none(),
        "a typed get checks the backend"
    );
    let one: i32 = pg
        .fetch_one(|| sqlx::query_scalar("SELECT 1"))
        .await
        .unwrap();
    let two: i32 = lite
        .fetch_one(|| sqlx::query_scalar("SELECT 2"))
        .await
        .unwrap();
    assert_eq!((one, two), (1, 2));

    let again = databases
        .start::<PgConnection>(
            DatabaseConfig::new("postgres://postgres@127.0.0.1:5432/test".parse().unwrap())
                .with_name(&orders),
        )
        .await
        .unwrap_err();
    assert_eq!(again.phase(), Phase::Config);
    assert!(again.to_string().contains("already started"), "{again}");

    databases
        .stop(&cache, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(databases.get::<SqliteConnection>(&cache).is_none());
    assert_eq!(databases.names(), vec![orders.clone()]);
    let err = lite
        .fetch_one(|| sqlx::query_scalar::<_, i32>("SELECT 2"))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Phase::Shutdown);
    let still: i32 = pg
        .fetch_one(|| sqlx::query_scalar("SELECT 3"))
        .await
        .unwrap();
    assert_eq!(still, 3);
    assert_eq!(databases.health().len(), 1);
    assert_eq!(databases.metrics_snapshots()[0].0, orders);

    let unknown = databases
        .stop(&cache, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        unknown.to_string().contains("no database named"),
        "{unknown}"
    );
    databases.stop_all(Duration::from_secs(5)).await.unwrap();
    assert!(databases.names().is_empty());
}
