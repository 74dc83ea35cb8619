//! The conformance suite on PostgreSQL (a real server: 127.0.0.1:5432, or
//! `KEEL_TEST_POSTGRES_URL`), each store in a schema of its own, and what
//! is the SQL backend's own: migrations, schema versions, unreadable rows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::sync::Arc;

use keel_pool_core::sqlx;
use keel_session_store::{
    ManualClock, NewSession, PgStore, SchemaError, SessionStore, SqlConfig, StoreConfig, StoreError,
};

#[allow(
    dead_code,
    reason = "the suite's sweep helpers want paused time or no runtime; a pool needs real time and a runtime, so this file tests its sweep itself"
)]
mod conformance;

use conformance::sql::pg::{Factory, fresh_schema, pool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let f = Factory::default();
    conformance::run_all(&f).await;
    f.drop_schemas().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_checked_before_a_store_starts() {
    let pool = pool().await;
    let schema = fresh_schema();
    let sql = SqlConfig::default().with_schema(&schema);
    let missing = PgStore::builder(pool.clone(), sql.clone(), StoreConfig::default())
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::Schema(SchemaError::Missing { .. })),
        "{missing}"
    );
    assert!(missing.to_string().contains("migrate()"), "{missing}");
    // Several instances migrating at once: each succeeds, one set of tables.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (pool, sql) = (pool.clone(), sql.clone());
            tokio::spawn(async move { PgStore::migrate(&pool, &sql).await })
        })
        .collect();
    for run in runs {
        run.await.unwrap().unwrap();
    }
    PgStore::migrate(&pool, &sql).await.unwrap();
    PgStore::builder(pool.clone(), sql.clone(), StoreConfig::default())
        .build()
        .await
        .unwrap();
    // A newer release migrated the tables: this code refuses them.
    let mut conn = pool.get().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {schema}.keel_session_schema (version) VALUES (99)"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    let too_new = PgStore::builder(pool.clone(), sql.clone(), StoreConfig::default())
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
    assert!(PgStore::migrate(&pool, &sql).await.is_err());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn table_names_that_could_change_a_statement_are_refused() {
    let pool = pool().await;
    let sql = SqlConfig::default().with_schema("x; DROP TABLE y");
    let err = PgStore::migrate(&pool, &sql).await.unwrap_err();
    let StoreError::Config(config) = &err else {
        panic!("{err}");
    };
    assert_eq!(config.field(), "schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_row_names_its_session_and_the_others_keep_serving() {
    let f = Factory::default();
    let store = f.make_plain();
    let good = store.create(NewSession::new("c", "http")).await.unwrap();
    let bad = store.create(NewSession::new("c", "http")).await.unwrap();
    let schema = f.schemas.lock().unwrap()[0].clone();
    let pool = pool().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {schema}.keel_sessions SET data = '[1, 2]'::jsonb WHERE id = $1"
    )))
    .bind(bad.id.as_bytes().as_slice())
    .execute(&mut *pool.get().await.unwrap())
    .await
    .unwrap();
    let err = store.get(&bad.id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unreadable { id, .. } if *id == bad.id),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("not an object") || text.contains("object"),
        "{text}"
    );
    assert!(
        !text.contains(&bad.id.to_string()),
        "the whole id is a secret: {text}"
    );
    assert!(store.get(&good.id).await.unwrap().is_some());
    assert!(
        store.by_client("c").await.is_err(),
        "the listing names the bad row"
    );
    assert!(
        store.delete(&bad.id).await.unwrap(),
        "a bad row can be deleted"
    );
    assert_eq!(store.by_client("c").await.unwrap().len(), 1);
    f.drop_schemas().await;
}

/// The background sweep deletes expired rows every `cleanup_interval`
/// (50 ms here) on the runtime's blocking threads. The wait is a liveness
/// bound (10 s), not a timing claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_sweep_deletes_expired_rows() {
    let f = Factory::default();
    let clock = ManualClock::at(0);
    let config = StoreConfig::default().with_cleanup_interval(std::time::Duration::from_millis(50));
    let store = f.store(config, clock.clone(), None);
    for _ in 0..5 {
        store
            .create(NewSession::new("c", "http").with_ttl(std::time::Duration::from_secs(1)))
            .await
            .unwrap();
    }
    assert_eq!(store.len().await.unwrap(), 5);
    clock.advance(std::time::Duration::from_secs(2));
    let mut swept = false;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if store.len().await.unwrap() == 0 {
            swept = true;
            break;
        }
    }
    assert!(swept, "never swept");
    drop(store);
    f.drop_schemas().await;
}

/// A write whose connection dies under it reports that its outcome is
/// unknown (here it was not applied: the row was locked); a read after it
/// is served on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_off_mid_statement_is_reported_as_unknown() {
    let f = Factory::default();
    let store = Arc::new(f.make_plain());
    let s = store.create(NewSession::new("c", "http")).await.unwrap().id;
    let schema = f.schemas.lock().unwrap()[0].clone();
    let pool = pool().await;
    // Another session locks the row, so the store's update waits on it.
    let mut locker = pool.get().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *locker).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT 1 FROM {schema}.keel_sessions WHERE id = $1 FOR UPDATE"
    )))
    .bind(s.as_bytes().as_slice())
    .execute(&mut *locker)
    .await
    .unwrap();
    let update = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.update(&s, 1, keel_session_store::Data::new()).await }
    });
    // Terminate the waiting backend (bounded wait for it to block).
    let mut admin = pool.get().await.unwrap();
    let mut killed = 0;
    for _ in 0..200 {
        killed = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE {schema}.keel_sessions%'"
        )))
        .fetch_one(&mut *admin)
        .await
        .unwrap();
        if killed > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(killed, 1, "the update never waited on the lock");
    let err = update.await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::OutcomeUnknown(_)), "{err}");
    assert!(err.to_string().contains("may or may not"), "{err}");
    sqlx::query("ROLLBACK").execute(&mut *locker).await.unwrap();
    drop(locker);
    let now = store.get(&s).await.unwrap().unwrap();
    assert_eq!(now.version, 1, "not applied");
    // Every idle connection of the store's pool dies (those whose last
    // statement named this test's schema): reads still answer.
    let idle: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND state = 'idle' AND query LIKE '%{schema}.keel_sessions%'"
    )))
    .fetch_one(&mut *admin)
    .await
    .unwrap();
    assert!(idle >= 1, "the store's connection was idle in its pool");
    assert!(store.get(&s).await.unwrap().is_some());
    assert_eq!(store.by_client("c").await.unwrap().len(), 1);
    drop(admin);
    f.drop_schemas().await;
}
