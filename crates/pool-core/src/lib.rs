#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

pub(crate) mod acquire;
mod clock;
mod config;
mod error;
mod maintenance;
mod manager;
mod observer;
mod pool;
mod pooled;
mod shared;
mod stats;

pub use config::{ConfigError, PoolConfig, QueueMode};
pub use error::{BuildError, Phase, PoolError};
pub use manager::{CheckIn, Manager};
pub use observer::{CloseReason, Event, Observer};
pub use pool::{CloseError, Pool, PoolBuilder};
pub use pooled::Pooled;
pub use stats::{ClosedCounts, Stats, TimeoutCounts, WAIT_BUCKETS, WaitHistogram};
