//! Where and how the sled backend keeps its data.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Durability {
    /// A write returns only once it is on disk (fsync): acknowledged
    /// writes survive a crash of the process or the machine. Concurrent
    /// writers share one fsync (group commit), so throughput grows with
    /// concurrency while each write still waits for one.
    Durable,
    /// A write returns once applied in memory; everything is flushed every
    /// `flush_every`, so a crash loses at most that window of writes (the
    /// store still reopens consistent: batches are atomic).
    Relaxed {
        /// How often to flush.
        #[serde(with = "humantime_serde")]
        flush_every: Duration,
    },
}

/// Where and how the sled backend keeps its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SledConfig {
    /// The database directory (created if missing).
    pub path: PathBuf,
    /// When writes are acknowledged (default [`Durability::Durable`]).
    #[serde(default = "durable")]
    pub durability: Durability,
    /// sled's page cache, in bytes (default 1 GiB, sled's own default; a
    /// cache smaller than the live sessions makes every read go to disk).
    #[serde(default = "default_cache")]
    pub cache_bytes: u64,
}

fn durable() -> Durability {
    Durability::Durable
}

fn default_cache() -> u64 {
    1 << 30
}

impl SledConfig {
    /// Durable writes in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            durability: Durability::Durable,
            cache_bytes: default_cache(),
        }
    }

    /// With this durability.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}
