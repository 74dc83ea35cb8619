//! What a checkout can fail with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ConfigError;

/// The phase of a checkout (or of the pool's own work) that ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting in the queue for a free slot.
    Wait,
    /// Opening a new connection.
    Connect,
    /// Validating an idle connection before handing it out.
    Validate,
    /// Resetting a returned connection before reuse.
    Reset,
    /// Closing a connection.
    Close,
}

impl Phase {
    /// The phase's name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wait => "wait",
            Self::Connect => "connect",
            Self::Validate => "validate",
            Self::Reset => "reset",
            Self::Close => "close",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a checkout failed. `E` is the backend's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// A phase of the checkout took longer than its timeout.
    #[error("pool checkout timed out in the {phase} phase after {waited:?}")]
    Timeout {
        /// Which phase ran out of time.
        phase: Phase,
        /// How long it had been going.
        waited: Duration,
    },
    /// The pool was closed.
    #[error("the pool is closed")]
    Closed,
    /// Opening a connection failed; the backend's error says why (a wrong
    /// password, an unknown host, the server's connection limit).
    #[error("could not open a database connection{}: {source}", Endpoint(endpoint.as_deref()))]
    Connect {
        /// Where the connection was to go ([`Manager::endpoint`](crate::Manager::endpoint)):
        /// `host:port/db`, never a password.
        endpoint: Option<Arc<str>>,
        /// The backend's error.
        #[source]
        source: E,
    },
}

/// Shows " to ENDPOINT" when there is one.
struct Endpoint<'a>(Option<&'a str>);

impl fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(endpoint) => write!(f, " to {endpoint}"),
            None => Ok(()),
        }
    }
}

impl<E> PoolError<E> {
    /// Whether a phase timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether the pool is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }

    /// The phase that timed out, if one did.
    pub fn timeout_phase(&self) -> Option<Phase> {
        match self {
            Self::Timeout { phase, .. } => Some(*phase),
            _ => None,
        }
    }

    /// The backend's connect error, if opening a connection failed.
    pub fn connect_error(&self) -> Option<&E> {
        match self {
            Self::Connect { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Maps the backend error.
    pub fn map_backend<F, T>(self, f: F) -> PoolError<T>
    where
        F: FnOnce(E) -> T,
    {
        match self {
            Self::Timeout { phase, waited } => PoolError::Timeout { phase, waited },
            Self::Closed => PoolError::Closed,
            Self::Connect { endpoint, source } => PoolError::Connect {
                endpoint,
                source: f(source),
            },
        }
    }
}

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError<E> {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Warming the pool (`warm = true`) could not open its connections.
    #[error("warming the pool failed: {0}")]
    Warm(#[source] PoolError<E>),
    /// `build()` was called outside a tokio runtime. The pool's
    /// maintenance opens connections (async I/O), so it runs there; keel's
    /// background work that needs no I/O (the breaker's timer, a session
    /// store's sweep) runs without one.
    #[error(
        "the pool must be built inside a tokio runtime: its maintenance opens connections there"
    )]
    NoRuntime,
}
