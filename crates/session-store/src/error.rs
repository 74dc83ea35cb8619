//! What can go wrong with a session store.

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
    /// A session id could not be parsed.
    #[error("invalid session id: {0}")]
    InvalidId(String),
    /// The OS could not supply randomness for a new id.
    #[error("no randomness for a session id: {0}")]
    Random(String),
    /// The backend failed.
    #[error("session backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}
