#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod config;
mod database;
mod error;
mod registry;

pub use config::{ConfigError, DatabaseConfig, ENV_VARS};
#[cfg(feature = "mysql")]
pub use database::MySqlDatabase;
#[cfg(feature = "postgres")]
pub use database::PgDatabase;
#[cfg(feature = "sqlite")]
pub use database::SqliteDatabase;
pub use database::{Database, MetricsSnapshot, Stack};
pub use error::{BoxError, Error, Phase};
pub use registry::Databases;

/// keel-breaker: the circuit breaker.
pub use keel_breaker as breaker;
/// keel-health: checks, signals and probes.
pub use keel_health as health;
/// keel-pool-core: the pool and its operations.
pub use keel_pool_core as pool;
/// sqlx, as the pool uses it (its version and features always match).
pub use keel_pool_core::sqlx;
/// keel-retry: retries with backoff.
pub use keel_retry as retry;
/// keel-telemetry: metrics and spans.
pub use keel_telemetry as telemetry;
