//! Built-in checks for the other keel crates, each behind the feature
//! named after the crate.

#[cfg(feature = "breaker")]
mod breaker;
#[cfg(feature = "cluster")]
mod cluster;
#[cfg(feature = "pool")]
mod pool;
#[cfg(feature = "session-store")]
mod session;

#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub use breaker::{BreakerCheck, BreakerRegistryCheck};
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use cluster::ClusterCheck;
#[cfg(feature = "pool")]
#[cfg_attr(docsrs, doc(cfg(feature = "pool")))]
pub use pool::PoolCheck;
#[cfg(feature = "session-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "session-store")))]
pub use session::SessionStoreCheck;
