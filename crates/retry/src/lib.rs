#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod backoff;
#[cfg(feature = "breaker")]
mod breaker;
mod budget;
mod classify;
mod config;
mod error;
mod observer;
mod retry;
mod schedule;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod service;
#[cfg(feature = "sqlx")]
mod sqlx;

#[cfg(feature = "backoff")]
pub use backoff::BackoffCompat;
pub use backoff::{Backoff, ExponentialBackoff};
#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub use breaker::SkipOpenBreaker;
pub use budget::{BudgetConfig, RetryBudget};
pub use classify::{AlwaysTransient, Classify, Delivery, ErrorClass, Verdict, classify_io};
pub use config::{ConfigError, RetryPolicy};
pub use error::{Failure, GaveUp, GaveUpError, RetryError};
pub use observer::{Event, Observer};
pub use retry::{Idempotency, Retrier, retry};
pub use schedule::{Jitter, Schedule};
#[cfg(feature = "tower")]
pub use service::{RetryLayer, RetryService};
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use sqlx::SqlxClassifier;
