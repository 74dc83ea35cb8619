//! Every metric keel records: its name (OpenTelemetry's where one exists),
//! unit and help text. Prometheus renders `.` as `_` and, with the
//! recommended naming [`install`](crate::install) turns on, adds `_total`
//! to counters and the unit to the name (`_seconds`, `_bytes`).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Histogram bucket bounds, in seconds: 50 µs to 10 s, about three per
/// decade, so a 200 µs `SELECT 1` and a 3 s report both land in a bucket
/// that tells them apart.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Label: the pool a connection metric is about (OpenTelemetry's
/// `db.client.connection.pool.name`).
pub const POOL_NAME: &str = "db.client.connection.pool.name";
/// Label: `idle` or `used` (OpenTelemetry's `db.client.connection.state`).
pub const CONNECTION_STATE: &str = "db.client.connection.state";
/// Label: the name of a stack, breaker, retrier or session store.
pub const NAME: &str = "name";
/// Label: how an operation ended: `ok`, `error`, `rejected`, `timeout`,
/// `cancelled`.
pub const OUTCOME: &str = "outcome";
/// Label: the class of a failure (OpenTelemetry's `error.type`).
pub const ERROR_TYPE: &str = "error.type";

/// Open connections by state (gauge, read from the pool's stats at scrape).
pub const CONNECTION_COUNT: &str = "db.client.connection.count";
/// The pool's maximum size (gauge).
pub const CONNECTION_MAX: &str = "db.client.connection.max";
/// The pool's minimum idle connections (gauge).
pub const CONNECTION_IDLE_MIN: &str = "db.client.connection.idle.min";
/// Checkouts queued for a connection (gauge).
pub const CONNECTION_PENDING: &str = "db.client.connection.pending_requests";
/// Checkout phases that timed out, by `phase` (counter).
pub const CONNECTION_TIMEOUTS: &str = "db.client.connection.timeouts";
/// Time to open a connection (histogram, seconds).
pub const CONNECTION_CREATE_TIME: &str = "db.client.connection.create_time";
/// Time a checkout queued for a connection (histogram, seconds).
pub const CONNECTION_WAIT_TIME: &str = "db.client.connection.wait_time";
/// Connections opened (counter).
pub const CONNECTIONS_CREATED: &str = "keel.pool.connections.created";
/// Connections closed, by `reason` (counter).
pub const CONNECTIONS_CLOSED: &str = "keel.pool.connections.closed";

/// Operation latency through a [`TelemetryLayer`](crate::TelemetryLayer),
/// by `outcome` (histogram, seconds; its count is the outcome counter).
pub const OPERATION_DURATION: &str = "db.client.operation.duration";
/// Operations in flight through a `TelemetryLayer` (gauge).
pub const OPERATIONS_IN_FLIGHT: &str = "keel.operation.in_flight";
/// Failed operations by `error.type` (counter).
pub const OPERATION_ERRORS: &str = "keel.operation.errors";

/// Failed attempts seen by a retrier, by `class` (counter).
pub const RETRY_ATTEMPTS_FAILED: &str = "keel.retry.attempts_failed";
/// Retries scheduled (counter).
pub const RETRY_RETRIES: &str = "keel.retry.retries";
/// Retries the budget refused (counter).
pub const RETRY_BUDGET_EXHAUSTED: &str = "keel.retry.budget_exhausted";
/// Errors given back to the caller, by `reason` (counter).
pub const RETRY_GIVE_UPS: &str = "keel.retry.give_ups";

/// 1 for a breaker's current `state`, 0 for the others (gauge).
pub const BREAKER_STATE: &str = "keel.breaker.state";
/// Breaker transitions, by `from` and `to` (counter).
pub const BREAKER_TRANSITIONS: &str = "keel.breaker.transitions";
/// Calls a breaker turned away (counter).
pub const BREAKER_REJECTIONS: &str = "keel.breaker.rejections";

/// Session store operations, by `operation`: `created`, `deleted`,
/// `expired`, `conflict`, `save_dropped` (the tower-sessions adapter
/// dropped a save of a session already gone) (counter).
pub const SESSION_OPERATIONS: &str = "keel.session.operations";
/// What a disk-backed session store occupies (gauge, bytes).
pub const SESSION_DISK_SIZE: &str = "keel.session.disk_size";

/// Describes every metric above (unit and help text) to the installed
/// recorder. [`install`](crate::install) calls it; call it yourself after
/// installing a recorder of your own.
pub fn describe() {
    describe_gauge!(
        CONNECTION_COUNT,
        Unit::Count,
        "Open connections, by state (idle or used)."
    );
    describe_gauge!(
        CONNECTION_MAX,
        Unit::Count,
        "The maximum number of open connections allowed."
    );
    describe_gauge!(
        CONNECTION_IDLE_MIN,
        Unit::Count,
        "The minimum number of idle open connections kept."
    );
    describe_gauge!(
        CONNECTION_PENDING,
        Unit::Count,
        "Checkouts waiting for an open connection."
    );
    describe_counter!(
        CONNECTION_TIMEOUTS,
        Unit::Count,
        "Checkout phases that timed out, by phase."
    );
    describe_histogram!(
        CONNECTION_CREATE_TIME,
        Unit::Seconds,
        "The time it took to open a connection."
    );
    describe_histogram!(
        CONNECTION_WAIT_TIME,
        Unit::Seconds,
        "The time a checkout queued for a connection."
    );
    describe_counter!(CONNECTIONS_CREATED, Unit::Count, "Connections opened.");
    describe_counter!(
        CONNECTIONS_CLOSED,
        Unit::Count,
        "Connections closed, by reason."
    );
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Operation latency through the stack, by outcome."
    );
    describe_gauge!(
        OPERATIONS_IN_FLIGHT,
        Unit::Count,
        "Operations in flight through the stack."
    );
    describe_counter!(
        OPERATION_ERRORS,
        Unit::Count,
        "Failed operations, by error type."
    );
    describe_counter!(
        RETRY_ATTEMPTS_FAILED,
        Unit::Count,
        "Failed attempts, by error class (none: not retryable)."
    );
    describe_counter!(RETRY_RETRIES, Unit::Count, "Retries scheduled.");
    describe_counter!(
        RETRY_BUDGET_EXHAUSTED,
        Unit::Count,
        "Retries refused by the retry budget."
    );
    describe_counter!(
        RETRY_GIVE_UPS,
        Unit::Count,
        "Errors given back to the caller, by reason."
    );
    describe_gauge!(
        BREAKER_STATE,
        Unit::Count,
        "1 for the breaker's current state, 0 for the others."
    );
    describe_counter!(
        BREAKER_TRANSITIONS,
        Unit::Count,
        "Breaker state transitions, by from and to."
    );
    describe_counter!(
        BREAKER_REJECTIONS,
        Unit::Count,
        "Calls the breaker turned away."
    );
    describe_counter!(
        SESSION_OPERATIONS,
        Unit::Count,
        "Session store operations, by kind."
    );
    describe_gauge!(
        SESSION_DISK_SIZE,
        Unit::Bytes,
        "What a disk-backed session store occupies."
    );
}
