#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

pub(crate) mod acquire;
mod cancel;
mod clock;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod cluster;
mod config;
#[cfg(feature = "sqlx")]
mod driver;
mod error;
mod idle;
mod maintenance;
mod manager;
mod observer;
pub mod op;
mod pool;
mod pooled;
#[cfg(feature = "tower")]
mod service;
mod shared;
mod stats;

/// The sqlx this crate is built with, so a user needs no second sqlx
/// dependency to keep in step (and no features to hunt across two crates):
/// `use keel_pool_core::sqlx;`. The drivers follow this crate's features
/// `postgres`, `mysql` and `sqlite`.
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub extern crate sqlx;

#[cfg(feature = "mysql")]
pub use crate::driver::MySqlManager;
#[cfg(feature = "postgres")]
pub use crate::driver::PgManager;
#[cfg(feature = "sqlite")]
pub use crate::driver::SqliteManager;
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use crate::driver::{
    Backend, DatabaseUrl, SqlxConnection, SqlxManager, UrlError, UrlPart, is_too_many_connections,
};
pub use cancel::Canceller;
pub use config::{ConfigError, PoolConfig, QueueMode};
pub use error::{BuildError, Phase, PoolError};
pub use manager::{CheckIn, Manager, ServerState};
pub use observer::{CloseReason, Event, NoopObserver, Observer};
pub use op::BoxError;
pub use pool::{CloseError, Pool, PoolBuilder, ResizeError};
pub use pooled::Pooled;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use service::PoolService;
pub use stats::{ClosedCounts, Stats, TimeoutCounts, WAIT_BUCKETS, WaitHistogram};
