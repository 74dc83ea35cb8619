#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

pub(crate) mod acquire;
mod cancel;
mod clock;
mod config;
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
#[cfg(feature = "sqlx")]
mod sqlx;
#[cfg(feature = "sqlx")]
mod statement;
mod stats;
#[cfg(feature = "sqlx")]
mod url;

#[cfg(feature = "mysql")]
pub use crate::sqlx::MySqlManager;
#[cfg(feature = "postgres")]
pub use crate::sqlx::PgManager;
#[cfg(feature = "sqlite")]
pub use crate::sqlx::SqliteManager;
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use crate::sqlx::{SqlxConnection, SqlxManager, is_too_many_connections};
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use crate::url::{Backend, DatabaseUrl, UrlError, UrlPart};
pub use cancel::Canceller;
pub use config::{ConfigError, PoolConfig, QueueMode};
pub use error::{BuildError, Phase, PoolError};
pub use manager::{CheckIn, Manager};
pub use observer::{CloseReason, Event, Observer};
pub use pool::{CloseError, Pool, PoolBuilder, ResizeError};
pub use pooled::Pooled;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use service::PoolService;
pub use stats::{ClosedCounts, Stats, TimeoutCounts, WAIT_BUCKETS, WaitHistogram};
