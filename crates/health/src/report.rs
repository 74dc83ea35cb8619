//! The report a registry gives: overall status and each entry's last result.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::{Source, Status};

/// A registry's state at one moment: see [`HealthRegistry::report`](crate::HealthRegistry::report).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The worst status of any entry.
    pub status: Status,
    /// The entry that decides `status` (`None` when all are healthy).
    pub decided_by: Option<String>,
    /// Whether [`drain`](crate::HealthRegistry::drain) was called.
    pub draining: bool,
    /// Time since the registry was built.
    pub uptime: Duration,
    /// The service's version, if given.
    pub version: Option<String>,
    /// Every check and signal, in the order they were added.
    pub entries: Vec<EntryReport>,
}

/// One check's or signal's last result.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EntryReport {
    /// Its name in the registry.
    pub name: String,
    /// A polled check or a pushed signal.
    pub source: Source,
    /// Its status (Unhealthy until a check first finishes).
    pub status: Status,
    /// Why, if it said.
    pub message: Option<String>,
    /// Structured details (pool stats, breaker state, ...).
    pub details: Map<String, Value>,
    /// How long the last run took (checks only).
    pub latency: Option<Duration>,
    /// When the last run finished, or when the signal last changed.
    pub at: Option<SystemTime>,
}

impl Report {
    /// Whether readiness answers 200: not draining, and not Unhealthy.
    pub fn is_ready(&self) -> bool {
        !self.draining && self.status != Status::Unhealthy
    }

    /// The JSON that `/health/detailed` serves: `status`, `ready`,
    /// `draining`, `decided_by`, `uptime_seconds`, `version`, and `checks`,
    /// each with `name`, `source`, `status`, `message`, `latency_ms`,
    /// `last_run` (RFC 3339) and `details`.
    pub fn to_json(&self) -> Value {
        let checks: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "source": e.source.as_str(),
                    "status": e.status,
                    "message": e.message,
                    "latency_ms": e.latency.map(|d| d.as_secs_f64() * 1e3),
                    "last_run": e.at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                    "details": e.details,
                })
            })
            .collect();
        json!({
            "status": self.status,
            "ready": self.is_ready(),
            "draining": self.draining,
            "decided_by": self.decided_by,
            "uptime_seconds": self.uptime.as_secs_f64(),
            "version": self.version,
            "checks": checks,
        })
    }
}
