//! [`MetricsSnapshot`]: the counters the reference systems report, read
//! from the stack's own counts.

use std::time::Duration;

/// What a [`Database`](crate::Database) has done since it started (see
/// [`metrics_snapshot`](crate::Database::metrics_snapshot)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Calls that finished, whatever the outcome (retries inside one call
    /// count once).
    pub queries_total: u64,
    /// Calls that succeeded.
    pub queries_ok: u64,
    /// Calls that failed: errors, timeouts and rejections.
    pub queries_failed: u64,
    /// Of the failed, those the open breaker turned away.
    pub queries_rejected: u64,
    /// Of the failed, those a timeout ended.
    pub queries_timed_out: u64,
    /// Calls under way now.
    pub in_flight: u64,
    /// Retries scheduled (a call retried twice counts two).
    pub retries: u64,
    /// Times the breaker opened.
    pub breaker_opens: u64,
    /// Breaker state changes of any kind.
    pub breaker_transitions: u64,
    /// Time spent in all finished calls.
    pub total_latency: Duration,
    /// Their mean.
    pub average_latency: Duration,
    /// Connections opened.
    pub connections_created: u64,
    /// Checkouts served by a connection already open.
    pub connections_reused: u64,
}
