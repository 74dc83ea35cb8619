//! Stores on the real SQL servers, each in a schema (a database, on
//! MySQL) of its own: PostgreSQL at 127.0.0.1:5432 (or
//! `KEEL_TEST_POSTGRES_URL`), MariaDB at 127.0.0.1:3306 (or
//! `KEEL_TEST_MYSQL_URL`).

#![allow(
    dead_code,
    reason = "the memory and sled test files share the suite but not this"
)]

/// A schema name no other test uses.
pub(crate) fn fresh_schema() -> String {
    format!("keel_sessions_test_{:016x}", fastrand::u64(..))
}

/// A factory module for one SQL store type.
macro_rules! sql_factory {
    ($module:ident, $store:ident, $manager:ident, $env:literal, $default_url:literal, $drop:literal) => {
        pub(crate) mod $module {
            use std::sync::Mutex;

            use keel_pool_core::sqlx;
            use keel_pool_core::{Pool, $manager};
            use keel_session_store::{
                Clock, ManualClock, Observer, SqlConfig, StoreConfig, SystemClock, $store,
            };

            pub(crate) use super::fresh_schema;

            type Builder = keel_session_store::StoreBuilder<(Pool<$manager>, SqlConfig)>;

            pub(crate) fn url() -> String {
                std::env::var($env).unwrap_or_else(|_| $default_url.into())
            }

            pub(crate) async fn pool() -> Pool<$manager> {
                let manager = <$manager>::from_url(&url().parse().unwrap()).unwrap();
                Pool::builder(manager).build().await.unwrap()
            }

            /// Makes stores in fresh schemas, and drops every one it made.
            #[derive(Default)]
            pub(crate) struct Factory {
                pub(crate) schemas: Mutex<Vec<String>>,
            }

            impl Factory {
                pub(crate) fn store(
                    &self,
                    config: StoreConfig,
                    clock: impl Clock,
                    observer: Option<Box<dyn FnOnce(Builder) -> Builder>>,
                ) -> $store {
                    let schema = fresh_schema();
                    self.schemas.lock().unwrap().push(schema.clone());
                    crate::conformance::block_on(async {
                        let pool = pool().await;
                        let sql = SqlConfig::default().with_schema(schema);
                        $store::migrate(&pool, &sql).await.unwrap();
                        let mut builder = $store::builder(pool, sql, config).clock(clock);
                        if let Some(observe) = observer {
                            builder = observe(builder);
                        }
                        builder.build().await.unwrap()
                    })
                }

                pub(crate) async fn drop_schemas(&self) {
                    let pool = pool().await;
                    let mut conn = pool.get().await.unwrap();
                    let schemas = std::mem::take(&mut *self.schemas.lock().unwrap());
                    for schema in schemas {
                        sqlx::query(sqlx::AssertSqlSafe(format!($drop, schema = schema)))
                            .execute(&mut *conn)
                            .await
                            .unwrap();
                    }
                }
            }

            impl crate::conformance::Factory for Factory {
                type Store = $store;
                fn make(&self, config: StoreConfig, clock: ManualClock) -> $store {
                    self.store(config, clock, None)
                }
                fn make_observed(
                    &self,
                    config: StoreConfig,
                    clock: ManualClock,
                    observer: impl Observer,
                ) -> $store {
                    self.store(
                        config,
                        clock,
                        Some(Box::new(move |b| b.observer(observer).name("conformance"))),
                    )
                }
            }

            impl Factory {
                pub(crate) fn make_plain(&self) -> $store {
                    self.store(StoreConfig::default(), ManualClock::at(0), None)
                }
            }

            impl Factory {
                /// A store on the system clock, as an application runs one.
                pub(crate) fn make_live(&self) -> $store {
                    self.store(StoreConfig::default(), SystemClock, None)
                }
            }
        }
    };
}

#[cfg(feature = "postgres")]
sql_factory!(
    pg,
    PgStore,
    PgManager,
    "KEEL_TEST_POSTGRES_URL",
    "postgres://postgres@127.0.0.1:5432/test",
    "DROP SCHEMA {schema} CASCADE"
);
#[cfg(feature = "mysql")]
sql_factory!(
    my,
    MySqlStore,
    MySqlManager,
    "KEEL_TEST_MYSQL_URL",
    "mysql://root@127.0.0.1:3306/test",
    "DROP DATABASE {schema}"
);
