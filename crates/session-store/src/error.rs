//! What can go wrong with a session store.

use crate::journal::JournalStatus;

/// A session store error. Messages name what went wrong and never contain
/// a session's data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A compare-and-swap update found a newer version: reread and retry.
    #[error("session was changed concurrently: expected version {expected}, found {actual}")]
    Conflict {
        /// The version the writer based its change on.
        expected: u64,
        /// The version in the store.
        actual: u64,
    },
    /// The session does not exist (or has expired).
    #[error("no such session")]
    NotFound,
    /// The store holds `limit` sessions already.
    #[error("session limit reached: the store holds {limit} sessions (config `max_sessions`)")]
    TooManySessions {
        /// The configured limit.
        limit: usize,
    },
    /// A session's data is larger than allowed.
    #[error(
        "session data is {bytes} bytes, over the limit of {limit} (config `max_session_bytes`)"
    )]
    TooLarge {
        /// The data's serialized size.
        bytes: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A journal holds `limit` records and all are still pending.
    #[error(
        "journal full: {limit} records are all pending (config `max_journal_records`); commit or abort some"
    )]
    JournalFull {
        /// The configured limit.
        limit: usize,
    },
    /// The journal has no record with this seq (never appended, or forgotten).
    #[error("no journal record {seq}")]
    NoJournalRecord {
        /// The seq asked for.
        seq: u64,
    },
    /// A journal record cannot move from one status to the other.
    #[error("journal record {seq} cannot go from {from:?} to {to:?}")]
    JournalTransition {
        /// The record.
        seq: u64,
        /// Its status.
        from: JournalStatus,
        /// The status asked for.
        to: JournalStatus,
    },
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A backup could not be written or read.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// A session id could not be parsed.
    #[error("invalid session id: {0}")]
    InvalidId(#[from] crate::id::IdError),
    /// The OS could not supply randomness for a new id.
    #[error("no randomness for a session id: {0}")]
    Random(#[source] std::io::Error),
    /// The SQL backend's tables are missing, behind or newer than this
    /// code.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    #[error(transparent)]
    Schema(#[from] crate::sql::SchemaError),
    /// A stored session could not be read back (its data is not a JSON
    /// object, a field is out of range): that session only; the others
    /// keep serving. The message shows the id as `Debug` does (its first
    /// digits: an id is a bearer secret).
    #[error("session {id:?} is unreadable: {reason}")]
    Unreadable {
        /// The session.
        id: crate::id::SessionId,
        /// What was found.
        reason: String,
    },
    /// The connection to a shared engine (PostgreSQL) was lost while a
    /// write was on its way: it may or may not have been applied. Read the
    /// session again before deciding to repeat it.
    #[error("the connection was lost during a write, which may or may not have been applied: {0}")]
    OutcomeUnknown(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The shared engine lost the store's data (Redis restarted without
    /// persistence, or was flushed): sessions written before are gone. The
    /// store carries on, empty; this call did nothing.
    #[error("session store lost its data: {reason}")]
    Lost {
        /// What happened.
        reason: String,
    },
    /// The backend failed.
    #[error("session backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}
