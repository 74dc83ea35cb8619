//! Where and how the sled backend keeps its data.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

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

    /// Checks every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new("path", "must name a directory"));
        }
        if let Durability::Relaxed { flush_every } = self.durability
            && flush_every < Duration::from_millis(1)
        {
            return Err(ConfigError::new(
                "durability.relaxed.flush_every",
                "must be at least 1ms",
            ));
        }
        Ok(())
    }

    /// How often sled flushes on its own, in ms: never in durable mode
    /// (every write flushes through group commit).
    pub(super) fn flush_every_ms(&self) -> Option<u64> {
        match self.durability {
            Durability::Durable => None,
            Durability::Relaxed { flush_every } => {
                Some(u64::try_from(flush_every.as_millis()).unwrap_or(u64::MAX))
            }
        }
    }
}
