//! What a check finds: a [`Status`] and an [`Outcome`] that explains it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How well something works, from best to worst; `max` of two is the worse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Works as it should.
    Healthy,
    /// Works, but something needs attention (a pool near its limit, a
    /// breaker probing); readiness stays 200.
    Degraded,
    /// Does not work; readiness answers 503.
    Unhealthy,
}

impl Status {
    /// The lowercase name, as the JSON reports show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    /// `None` for [`PENDING`] (or any value no status has).
    pub(crate) fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Healthy),
            1 => Some(Self::Degraded),
            2 => Some(Self::Unhealthy),
            _ => None,
        }
    }
}

/// The atomic encoding of "no result yet".
pub(crate) const PENDING: u8 = u8::MAX;

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one run of a check found: a status, a one-line reason and
/// structured details (pool stats, breaker state, ...) for the detailed
/// report. Never put a secret in either: both are served over HTTP.
///
/// ```
/// use keel_health::{Outcome, Status};
///
/// let outcome = Outcome::degraded("replica lag 12 s").with_detail("lag_seconds", 12);
/// assert_eq!(outcome.status(), Status::Degraded);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    status: Status,
    message: Option<String>,
    details: Map<String, Value>,
}

impl Outcome {
    /// Healthy, with no message.
    pub fn healthy() -> Self {
        Self::new(Status::Healthy, None)
    }

    /// Degraded, and why.
    pub fn degraded(message: impl Into<String>) -> Self {
        Self::new(Status::Degraded, Some(message.into()))
    }

    /// Unhealthy, and why.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self::new(Status::Unhealthy, Some(message.into()))
    }

    /// Any status, with an optional reason.
    pub fn new(status: Status, message: Option<String>) -> Self {
        Self {
            status,
            message,
            details: Map::new(),
        }
    }

    /// Adds one structured detail (replacing one of the same key).
    #[must_use]
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// Sets the message, keeping the status (a healthy check may say what
    /// it saw).
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Why, if the check said.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The structured details.
    pub fn details(&self) -> &Map<String, Value> {
        &self.details
    }
}

impl From<Status> for Outcome {
    fn from(status: Status) -> Self {
        Self::new(status, None)
    }
}

/// `Ok` is healthy; `Err` is unhealthy with the error's message (and its
/// sources), so a closure check can use `?`.
impl<E: std::error::Error> From<Result<(), E>> for Outcome {
    fn from(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Self::healthy(),
            Err(error) => Self::unhealthy(error_chain(&error)),
        }
    }
}

/// An error and the sources its own message does not already include.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worse_status_is_the_larger() {
        assert!(Status::Unhealthy > Status::Degraded);
        assert_eq!(Status::Healthy.max(Status::Degraded), Status::Degraded);
        for status in [Status::Healthy, Status::Degraded, Status::Unhealthy] {
            assert_eq!(Status::from_u8(status.to_u8()), Some(status));
        }
        assert_eq!(Status::from_u8(PENDING), None);
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(Wrapper(inner));
        assert_eq!(error_chain(&outer), "wrapped: refused");
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
