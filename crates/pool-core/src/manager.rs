//! The backend-agnostic connection lifecycle the pool drives.

use std::future::Future;

use crate::cancel::Canceller;

/// What to do with a connection that has just been returned. Decided
/// synchronously: release never waits and never spawns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckIn {
    /// Put it back as it is.
    Reuse,
    /// Put it back after [`Manager::reset`], which runs at once in a task
    /// of its own (a transaction left open keeps its locks until reset),
    /// the connection holding its slot meanwhile.
    Reset,
    /// Close it: its state is unknown or it is broken.
    Discard,
}

/// What a server said about itself right after a connection was opened:
/// the two facts libpq's `target_session_attrs` goes by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerState {
    /// The server replays another's changes (PostgreSQL
    /// `pg_is_in_recovery()`; on MySQL / MariaDB, a read-only server).
    pub in_recovery: bool,
    /// Sessions on it cannot write (PostgreSQL `transaction_read_only`,
    /// MySQL / MariaDB `@@read_only`).
    pub read_only: bool,
}

impl ServerState {
    /// A writable primary.
    pub const PRIMARY: Self = Self {
        in_recovery: false,
        read_only: false,
    };
    /// A read-only standby.
    pub const STANDBY: Self = Self {
        in_recovery: true,
        read_only: true,
    };
}

/// Opens, checks, resets and closes connections of one kind. The pool
/// applies a timeout to every method that does I/O.
///
/// ```
/// use std::convert::Infallible;
/// use keel_pool_core::Manager;
///
/// /// A "connection" that is a counter: enough to show the shape.
/// #[derive(Debug)]
/// struct Counters;
///
/// impl Manager for Counters {
///     type Connection = u64;
///     type Error = Infallible;
///
///     async fn connect(&self) -> Result<u64, Infallible> {
///         Ok(0)
///     }
///
///     async fn validate(&self, _conn: &mut u64) -> Result<(), Infallible> {
///         Ok(())
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The pooled connection.
    type Connection: Send + 'static;
    /// What connecting, validating and resetting fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Checks that an idle connection still works (a ping). Called only on
    /// connections idle longer than `validate_after_idle`.
    fn validate(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Decides, without I/O, what happens to a returned connection.
    fn check_in(&self, conn: &mut Self::Connection) -> CheckIn {
        let _ = conn;
        CheckIn::Reuse
    }

    /// Brings a connection that [`check_in`](Manager::check_in) marked
    /// `Reset` back to a clean state; runs as soon as it is returned, under
    /// `reset_timeout` (a failure closes it).
    fn reset(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = conn;
        async { Ok(()) }
    }

    /// Closes a connection gracefully. The pool drops the connection
    /// instead when this takes longer than `close_timeout`, and on paths
    /// that must not wait (release).
    fn close(&self, conn: Self::Connection) -> impl Future<Output = ()> + Send {
        async move { drop(conn) }
    }

    /// Captures, right after connecting (within the connect timeout), what
    /// cancels a command this connection runs from outside it: the server's
    /// process or connection id and where to reach it. `None` (the default)
    /// when the backend has nothing to cancel with; then a timed-out
    /// command is only abandoned by closing its connection.
    fn canceller(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<Option<Canceller>, Self::Error>> + Send {
        let _ = conn;
        async { Ok(None) }
    }

    /// Whether an error an operation returned means its connection is
    /// broken (an I/O or protocol error), so the pool closes it.
    fn is_fatal(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        let _ = error;
        false
    }

    /// Where connections go, for error messages and metrics: `host:port/db`
    /// or a file name, never a user name, password or query. `None` (the
    /// default) when there is nothing worth naming. Called once, when the
    /// pool is built.
    fn endpoint(&self) -> Option<String> {
        None
    }

    /// Asks a freshly opened connection's server whether it is a standby
    /// and whether it takes writes. Only a
    /// [`Cluster`](crate::cluster::Cluster) asks, once per new connection
    /// and on each refresh, to route writes to the primary and follow a
    /// failover. `None` (the default) when the backend cannot tell; the
    /// endpoint then keeps the role it was configured with.
    fn server_state(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<Option<ServerState>, Self::Error>> + Send {
        let _ = conn;
        async { Ok(None) }
    }

    /// How far a standby's replay lags behind its primary, asked by a
    /// [`Cluster`](crate::cluster::Cluster) on each refresh when it has a
    /// `max_replica_lag`. `None` (the default) when the backend cannot
    /// tell; the replica is then never demoted for lag. Implement it (or
    /// wrap a manager) to supply a check of your own.
    fn replay_lag(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<Option<std::time::Duration>, Self::Error>> + Send {
        let _ = conn;
        async { Ok(None) }
    }

    /// Whether a connect error means the server is out of connection slots
    /// (PostgreSQL 53300, MySQL 1040). A checkout that meets it waits for
    /// a connection another task releases instead of failing at once.
    fn is_exhausted(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }
}
