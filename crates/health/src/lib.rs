#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod check;
pub mod checks;
mod config;
#[cfg(feature = "http")]
mod http;
mod observer;
mod registry;
mod report;
mod signal;
mod status;
mod sync;

pub use check::HealthCheck;
pub use config::{ConfigError, HealthConfig};
#[cfg(feature = "axum")]
pub use http::router;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use http::{Detail, HealthService};
pub use observer::{Event, NoopObserver, Observer, Source};
pub use registry::{BuildError, HealthRegistry, HealthRegistryBuilder};
pub use report::{EntryReport, Report};
pub use signal::Signal;
pub use status::{Outcome, Status};
