//! Where a [`RedisStore`](super::RedisStore) keeps its keys.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Where the store keeps its keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Prefix of every key (default `keel:`); stores with different
    /// prefixes share a Redis without meeting.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "keel:".into(),
        }
    }
}

impl RedisConfig {
    /// Keys under `prefix`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Checks the prefix: not empty, printable, no spaces or glob
    /// characters (export finds the keys by pattern).
    ///
    /// # Errors
    /// A [`ConfigError`] naming `prefix`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.prefix;
        if p.is_empty() || p.len() > 64 {
            return Err(ConfigError::new("prefix", "must be 1 to 64 characters"));
        }
        if p.chars()
            .any(|c| !c.is_ascii_graphic() || "*?[]\\".contains(c))
        {
            return Err(ConfigError::new(
                "prefix",
                format!("{p:?} holds a space, a control or a glob character"),
            ));
        }
        Ok(())
    }
}
