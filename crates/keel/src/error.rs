//! [`Error`]: which database, in which phase, and why.

use std::fmt;
use std::sync::Arc;

use keel_pool_core::{Phase as PoolPhase, PoolError, sqlx};

use crate::ConfigError;

/// The error at the tower boundary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a [`Database`](crate::Database) call failed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// The configuration cannot work.
    Config,
    /// Opening a connection.
    Connect,
    /// Waiting for a connection from the pool.
    Checkout,
    /// The circuit breaker is open and turned the call away.
    Breaker,
    /// Running a statement (or a closure over a connection).
    Query,
    /// Running a transaction.
    Transaction,
    /// The database is shutting down, or has.
    Shutdown,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "invalid configuration",
            Self::Connect => "connecting",
            Self::Checkout => "waiting for a connection",
            Self::Breaker => "rejected by the open circuit breaker",
            Self::Query => "running a statement",
            Self::Transaction => "running a transaction",
            Self::Shutdown => "shut down",
        })
    }
}

/// A failed call: the database's name, the phase and the cause (with its
/// own sources). Its message never holds a password: URLs are shown with
/// `***` and the drivers' errors do not quote them.
///
/// ```text
/// database `orders`: connecting: could not open a database connection to
/// db:5432/orders: ... Connection refused (gave up after 4 attempts: no attempts left)
/// ```
#[derive(Debug, thiserror::Error)]
#[error("database `{database}`: {phase}: {source}")]
pub struct Error {
    database: Arc<str>,
    phase: Phase,
    #[source]
    source: BoxError,
}

impl Error {
    pub(crate) fn new(database: &Arc<str>, phase: Phase, source: impl Into<BoxError>) -> Self {
        Self {
            database: Arc::clone(database),
            phase,
            source: source.into(),
        }
    }

    pub(crate) fn config(database: &str, error: ConfigError) -> Self {
        Self::new(&Arc::from(database), Phase::Config, error)
    }

    /// An error from the stack, its phase read from the cause where the
    /// cause tells (a breaker rejection, a checkout timeout, a connect
    /// failure), `during` otherwise.
    pub(crate) fn from_stack(database: &Arc<str>, during: Phase, source: BoxError) -> Self {
        let phase = phase_of(&*source).unwrap_or(during);
        Self::new(database, phase, source)
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// What the call failed at.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether a timeout ended the call (a checkout, a connect, a command).
    pub fn is_timeout(&self) -> bool {
        self.find::<PoolError<sqlx::Error>>()
            .is_some_and(PoolError::is_timeout)
            || self.find::<keel_pool_core::op::CommandTimeout>().is_some()
    }

    /// Whether the open breaker turned the call away (nothing reached the
    /// database).
    pub fn is_rejected(&self) -> bool {
        self.phase == Phase::Breaker
    }

    /// The database's own error (a constraint violation, a syntax error,
    /// "no row"), if that is what the call failed with.
    pub fn as_database_error(&self) -> Option<&sqlx::Error> {
        self.find::<sqlx::Error>()
    }

    /// The first error of type `E` in the cause's chain.
    pub fn find<E: std::error::Error + 'static>(&self) -> Option<&E> {
        chain(&*self.source).find_map(|e| e.downcast_ref::<E>())
    }
}

/// An error and its sources, outermost first.
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| e.source())
}

fn phase_of(error: &(dyn std::error::Error + 'static)) -> Option<Phase> {
    chain(error).find_map(|error| {
        if error.is::<keel_breaker::Rejected>() {
            return Some(Phase::Breaker);
        }
        error
            .downcast_ref::<PoolError<sqlx::Error>>()
            .map(|pool| match pool {
                PoolError::Timeout {
                    phase: PoolPhase::Connect,
                    ..
                }
                | PoolError::Connect { .. } => Phase::Connect,
                PoolError::Closed => Phase::Shutdown,
                _ => Phase::Checkout,
            })
    })
}
