//! What keel's cross-crate tests share: where the databases are, a
//! process-wide Prometheus recorder, and scrapes read with a text-format
//! parser.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    reason = "test helpers: a failure panics the test, by design"
)]

pub mod load;

use std::sync::OnceLock;

use keel_pool_core::{PgManager, Pool, sqlx};
use keel_telemetry::PrometheusHandle;
use prometheus_parse::{Scrape, Value};

/// The shared PostgreSQL of these machines (trust auth).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Installs `keel_raise(code)` on the database: it raises an error with
/// that SQLSTATE, so a test can make a real server fail as it chooses
/// (`40001` a serialization failure, `XX000` an internal error).
pub async fn install_sql_helpers(pool: &Pool<PgManager>) {
    let mut conn = pool.get().await.unwrap();
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    // Concurrent CREATE OR REPLACE of one function can fail; take turns.
    sqlx::query("SELECT pg_advisory_xact_lock(7315)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "CREATE OR REPLACE FUNCTION keel_raise(code text) RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'keel test error %', code USING ERRCODE = code; END $$",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// Whether a breaker rejection is anywhere in `error`'s source chain.
pub fn is_rejection(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<keel_breaker::Rejected>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A throwaway PostgreSQL server of the test's own, and a fault proxy in
/// front of it (connect through `proxy.address()`).
pub async fn throwaway_behind_proxy() -> (
    std::sync::Arc<keel_fault::ThrowawayPostgres>,
    keel_fault::FaultProxy,
) {
    let pg = std::sync::Arc::new(
        tokio::task::spawn_blocking(keel_fault::ThrowawayPostgres::start)
            .await
            .unwrap()
            .unwrap(),
    );
    let upstream = format!("127.0.0.1:{}", pg.port()).parse().unwrap();
    let proxy = keel_fault::FaultProxy::start(upstream).await.unwrap();
    (pg, proxy)
}

/// The URL of database `postgres` through `proxy`.
pub fn proxied_url(proxy: &keel_fault::FaultProxy) -> String {
    format!("postgres://postgres@{}/postgres", proxy.address())
}

/// The standard stack's settings for the server behind `proxy`, named
/// `name`, with 8 connections.
pub fn proxied_config(proxy: &keel_fault::FaultProxy, name: &str) -> keel::DatabaseConfig {
    let mut config = keel::DatabaseConfig::new(proxied_url(proxy).parse().unwrap()).with_name(name);
    config.pool.max_size = 8;
    config
}

/// Every pool phase and every command bounded by one second, so a server
/// gone silent is felt within seconds.
pub fn one_second_timeouts(config: &mut keel::DatabaseConfig) {
    let second = std::time::Duration::from_secs(1);
    config.pool.wait_timeout = second;
    config.pool.connect_timeout = second;
    config.pool.validate_timeout = second;
    config.pool.command_timeout = Some(second);
}

/// keel's PostgreSQL session store over `pool`, its table migrated.
pub async fn pg_session_store(pool: Pool<PgManager>) -> keel_session_store::PgStore {
    use keel_session_store::{PgStore, SqlConfig, StoreConfig};
    let sql = SqlConfig::default();
    PgStore::migrate(&pool, &sql).await.unwrap();
    PgStore::builder(pool, sql, StoreConfig::default())
        .build()
        .await
        .unwrap()
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The recorder every test of one test binary records into, installed on
/// first use with keel's settings. Tests label their components with names
/// of their own, so they can share it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| keel_telemetry::install().expect("the first recorder of this process"))
}

/// A parsed scrape.
#[derive(Debug)]
pub struct Metrics(Scrape);

impl Metrics {
    /// Parses the text format.
    pub fn parse(text: &str) -> Self {
        Self(Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid text format"))
    }

    /// The one sample named `name` whose labels include `labels` (a
    /// histogram gives its count); `None` when there is none.
    ///
    /// # Panics
    /// When several samples match: the test's labels are too loose.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.0.samples.iter().filter(|s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        });
        let first = found.next()?;
        assert!(
            found.next().is_none(),
            "{name} {labels:?} matches several samples"
        );
        Some(match &first.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
    }

    /// `get`, or zero when the series does not exist.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}
