#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod attempts;
mod backoff;
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

pub use attempts::Idempotency;
#[cfg(feature = "backoff")]
pub use backoff::BackoffCompat;
pub use backoff::{Backoff, ExponentialBackoff};
pub use budget::{BudgetConfig, RetryBudget};
#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub use classify::SkipOpenBreaker;
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use classify::SqlxClassifier;
pub use classify::{AlwaysTransient, Classify, Delivery, ErrorClass, Verdict, classify_io};
pub use config::{ConfigError, RetryPolicy};
pub use error::{Failure, GaveUp, GaveUpError, RetryError};
pub use observer::{Event, NoopObserver, Observer};
pub use retry::{Retrier, RetrierBuilder, retry};
pub use schedule::{Jitter, Schedule};
#[cfg(feature = "tower")]
pub use service::{BoxError, RetryLayer, RetryService};
