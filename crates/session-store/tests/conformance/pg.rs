//! Stores on the real PostgreSQL (127.0.0.1:5432, or
//! `KEEL_TEST_POSTGRES_URL`), each in a schema of its own.

#![allow(
    dead_code,
    reason = "the memory and sled test files share the suite but not this"
)]

use std::sync::Mutex;

use keel_pool_core::sqlx;
use keel_pool_core::{PgManager, Pool};
use keel_session_store::{
    Clock, ManualClock, Observer, PgStore, SqlConfig, StoreConfig, SystemClock,
};

type Builder = keel_session_store::StoreBuilder<(Pool<PgManager>, SqlConfig)>;

pub(crate) fn url() -> String {
    std::env::var("KEEL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub(crate) async fn pool() -> Pool<PgManager> {
    let manager = PgManager::from_url(&url().parse().unwrap()).unwrap();
    Pool::builder(manager).build().await.unwrap()
}

/// A schema name no other test uses.
pub(crate) fn fresh_schema() -> String {
    format!("keel_sessions_test_{:016x}", fastrand::u64(..))
}

/// Makes stores in fresh schemas, and drops every one it made.
#[derive(Default)]
pub(crate) struct Postgres {
    pub(crate) schemas: Mutex<Vec<String>>,
}

impl Postgres {
    pub(crate) fn store(
        &self,
        config: StoreConfig,
        clock: impl Clock,
        observer: Option<Box<dyn FnOnce(Builder) -> Builder>>,
    ) -> PgStore {
        let schema = fresh_schema();
        self.schemas.lock().unwrap().push(schema.clone());
        // The suite's factory is synchronous; the store is built on this
        // (multi-thread) runtime.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let pool = pool().await;
                let sql = SqlConfig::default().with_schema(schema);
                PgStore::migrate(&pool, &sql).await.unwrap();
                let mut builder = PgStore::builder(pool, sql, config).clock(clock);
                if let Some(observe) = observer {
                    builder = observe(builder);
                }
                builder.build().await.unwrap()
            })
        })
    }

    pub(crate) async fn drop_schemas(&self) {
        let pool = pool().await;
        let mut conn = pool.get().await.unwrap();
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap());
        for schema in schemas {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
}

impl super::Factory for Postgres {
    type Store = PgStore;
    fn make(&self, config: StoreConfig, clock: ManualClock) -> PgStore {
        self.store(config, clock, None)
    }
    fn make_observed(
        &self,
        config: StoreConfig,
        clock: ManualClock,
        observer: impl Observer,
    ) -> PgStore {
        self.store(
            config,
            clock,
            Some(Box::new(move |b| b.observer(observer).name("conformance"))),
        )
    }
}

impl Postgres {
    pub(crate) fn make_plain(&self) -> PgStore {
        self.store(StoreConfig::default(), ManualClock::at(0), None)
    }
}

impl Postgres {
    /// A store on the system clock, as an application runs one.
    pub(crate) fn make_live(&self) -> PgStore {
        self.store(StoreConfig::default(), SystemClock, None)
    }
}
