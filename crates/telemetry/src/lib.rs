#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

#[cfg(feature = "breaker")]
mod breaker;
#[cfg(any(feature = "pool", feature = "breaker", feature = "session-store"))]
mod cache;
mod classify;
mod collect;
#[cfg(feature = "tower")]
mod layer;
pub mod names;
#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "retry")]
mod retry;
#[cfg(feature = "session-store")]
mod session;

/// The error type at the tower boundary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub use breaker::{BreakerGauges, BreakerMetrics};
pub use classify::{ERROR_TYPES, OperationOutcome};
pub use collect::Collect;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use layer::{
    FLUSH_INTERVAL, OperationCounts, ResponseFuture, Telemetry, TelemetryLayer, flush,
};
pub use names::{LATENCY_BUCKETS, describe};
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub use pool::{PoolGauges, PoolMetrics};
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use prometheus::{
    BuildError, MetricsService, PrometheusBuilder, PrometheusHandle, UPKEEP_INTERVAL, install,
    prometheus_builder,
};
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use retry::RetryMetrics;
#[cfg(feature = "session-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "session-store")))]
pub use session::SessionMetrics;
