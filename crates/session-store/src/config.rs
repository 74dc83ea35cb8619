//! Store configuration.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::data::Data;
use crate::error::StoreError;

/// Limits and timing shared by every backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Idle time after which a session expires, unless it asks for its own
    /// (default 30 minutes).
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// At most this many sessions (default 1,000,000); `None`: no limit.
    pub max_sessions: Option<usize>,
    /// At most this many bytes of serialized data per session (default
    /// 64 KiB); `None`: no limit.
    pub max_session_bytes: Option<usize>,
    /// How often the background task removes expired sessions (default 60 s).
    #[serde(with = "humantime_serde")]
    pub cleanup_interval: Duration,
    /// At most this many records in one session's journal (default 1024);
    /// past it the oldest finished record is forgotten.
    pub max_journal_records: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(30 * 60),
            max_sessions: Some(1_000_000),
            max_session_bytes: Some(64 * 1024),
            cleanup_interval: Duration::from_secs(60),
            max_journal_records: 1024,
        }
    }
}

/// A configuration value that cannot work: the path of the field (as it
/// appears in a config file) and what is wrong with it. The same shape in
/// every keel crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid session store config `{field}`: {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    field: Cow<'static, str>,
    reason: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The path of the offending field, e.g. `max_session_bytes`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl StoreConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason| Err(ConfigError::new(field, reason));
        if self.default_ttl < Duration::from_millis(1) {
            return bad("default_ttl", "must be at least 1ms");
        }
        if self.max_sessions == Some(0) {
            return bad("max_sessions", "must be at least 1 (or unset for no limit)");
        }
        if self.max_session_bytes == Some(0) {
            return bad(
                "max_session_bytes",
                "must be at least 1 (or unset for no limit)",
            );
        }
        if self.cleanup_interval < Duration::from_millis(10) {
            return bad("cleanup_interval", "must be at least 10ms");
        }
        if self.max_journal_records == 0 {
            return bad("max_journal_records", "must be at least 1");
        }
        Ok(())
    }

    /// [`StoreError::TooLarge`] if `data` is over `max_session_bytes`.
    pub(crate) fn check_size(&self, data: &Data) -> Result<(), StoreError> {
        let Some(limit) = self.max_session_bytes else {
            return Ok(());
        };
        let bytes = data.len();
        if bytes > limit {
            return Err(StoreError::TooLarge { bytes, limit });
        }
        Ok(())
    }

    /// Sets [`default_ttl`](Self::default_ttl).
    #[must_use]
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Sets [`max_sessions`](Self::max_sessions).
    #[must_use]
    pub fn with_max_sessions(mut self, max: Option<usize>) -> Self {
        self.max_sessions = max;
        self
    }

    /// Sets [`max_session_bytes`](Self::max_session_bytes).
    #[must_use]
    pub fn with_max_session_bytes(mut self, max: Option<usize>) -> Self {
        self.max_session_bytes = max;
        self
    }

    /// Sets [`max_journal_records`](Self::max_journal_records).
    #[must_use]
    pub fn with_max_journal_records(mut self, max: usize) -> Self {
        self.max_journal_records = max;
        self
    }

    /// Sets [`cleanup_interval`](Self::cleanup_interval).
    #[must_use]
    pub fn with_cleanup_interval(mut self, interval: Duration) -> Self {
        self.cleanup_interval = interval;
        self
    }
}
