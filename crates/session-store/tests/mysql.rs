//! The conformance suite on MariaDB / MySQL (a real server: 127.0.0.1:3306,
//! or `KEEL_TEST_MYSQL_URL`), each store in a database of its own, and
//! what is the MySQL backend's own: migrations, schema versions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use keel_pool_core::sqlx;
use keel_session_store::{
    MySqlStore, NewSession, SchemaError, SessionStore, SqlConfig, StoreConfig, StoreError,
};

#[allow(
    dead_code,
    reason = "the suite's sweep helpers want paused time or no runtime; a pool needs real time and a runtime"
)]
mod conformance;

use conformance::sql::my::{Factory, fresh_schema, pool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_conforms() {
    let f = Factory::default();
    conformance::run_all(&f).await;
    f.drop_schemas().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_checked_before_a_store_starts() {
    let pool = pool().await;
    let schema = fresh_schema();
    let sql = SqlConfig::default().with_schema(&schema);
    let missing = MySqlStore::builder(pool.clone(), sql.clone(), StoreConfig::default())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::Schema(SchemaError::Missing { .. })),
        "{missing}"
    );
    // Several instances migrating at once: each succeeds, one set of tables.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (pool, sql) = (pool.clone(), sql.clone());
            tokio::spawn(async move { MySqlStore::migrate(&pool, &sql).await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    let store = MySqlStore::builder(pool.clone(), sql.clone(), StoreConfig::default())
        .build()
        .await
        .unwrap();
    store.create(NewSession::new("c", "http")).await.unwrap();
    let mut conn = pool.get().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.keel_session_schema (version) VALUES (99)"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    let too_new = MySqlStore::builder(pool.clone(), sql.clone(), StoreConfig::default())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            too_new,
            StoreError::Schema(SchemaError::TooNew {
                found: 99,
                known: 1,
                ..
            })
        ),
        "{too_new}"
    );
    assert!(MySqlStore::migrate(&pool, &sql).await.is_err());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {schema}")))
        .execute(&mut *conn)
        .await
        .unwrap();
}
