#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod breaker;
mod call;
mod classify;
mod clock;
mod config;
mod counters;
#[cfg(feature = "failsafe")]
mod failsafe;
mod observer;
mod registry;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod service;
mod state;
mod timer;
mod window;

pub use breaker::{BreakerBuilder, CircuitBreaker, Info, OwnedPermit, Permit, Rejected};
pub use call::CallError;
#[cfg(feature = "sqlx")]
pub use classify::SqlxClassifier;
pub use classify::{Classify, DefaultClassifier, OnError, Outcome};
#[cfg(feature = "tokio")]
pub use clock::TokioClock;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    BreakerConfig, ConfigError, HalfOpenConfig, MAX_HALF_OPEN_CALLS, OpenBackoff, Window,
};
pub use observer::{Event, NoopObserver, Observer};
pub use registry::BreakerRegistry;
#[cfg(feature = "tower")]
pub use service::{BoxError, CircuitBreakerLayer, CircuitBreakerService};
pub use state::State;
pub use window::WindowStats;
