//! What the replicated log carries and what applying it answers: session
//! operations stamped by the leader with the time (and, for a create, the
//! id) every replica applies them at, so replicas never consult their own
//! clocks or random sources and always agree.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backup::SessionDump;
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{JournalEntry, JournalRecord, JournalStatus};
use crate::memory::MemoryStore;
use crate::session::{NewSession, Session};
use crate::store::SessionStore;

/// A session operation, as a client asks for it.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Create a session; the leader picks the id.
    Create {
        client_id: Arc<str>,
        transport: Arc<str>,
        data: Data,
        ttl_ms: Option<u64>,
    },
    /// Compare-and-swap the data.
    Update {
        id: SessionId,
        expected_version: u64,
        data: Data,
        ttl_ms: Option<u64>,
    },
    /// Mark active.
    Touch(SessionId),
    /// Remove.
    Delete(SessionId),
    /// Remove what has expired (the leader proposes it periodically).
    Expire,
    /// Append a pending journal record.
    JournalAppend { id: SessionId, entry: JournalEntry },
    /// Settle a journal record.
    JournalMark {
        id: SessionId,
        seq: u64,
        status: JournalStatus,
    },
    /// Replace every session (a restore).
    Import(#[serde(with = "as_json")] Vec<SessionDump>),
}

impl Op {
    /// The create operation for `new`.
    pub(crate) fn create(new: NewSession) -> Self {
        Self::Create {
            client_id: new.client_id,
            transport: new.transport,
            data: new.data,
            ttl_ms: new.ttl.map(millis),
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A log entry's payload: an operation, the leader's time, and for a
/// create the id the leader drew.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Command {
    pub(crate) at: u64,
    pub(crate) new_id: Option<SessionId>,
    pub(crate) op: Op,
}

/// Neither data nor whole ids: both may be secrets.
impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match &self.op {
            Op::Create { .. } => "create",
            Op::Update { .. } => "update",
            Op::Touch(_) => "touch",
            Op::Delete(_) => "delete",
            Op::Expire => "expire",
            Op::JournalAppend { .. } => "journal_append",
            Op::JournalMark { .. } => "journal_mark",
            Op::Import(_) => "import",
        };
        f.debug_struct("Command")
            .field("at", &self.at)
            .field("op", &op)
            .finish_non_exhaustive()
    }
}

/// A log entry's payload: the writes the leader gathered while the
/// previous entry was on its way, applied in order (one fsync and one
/// replication round for all of them). Shared, so the copies raft takes of
/// an entry (one per follower it sends it to, one to apply it) share its
/// data; encoded as the list itself.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Batch(pub(crate) Arc<Vec<Command>>);

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Batch").field(&self.0.len()).finish()
    }
}

/// What applying a [`Batch`] answers, one reply per command.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Replies(pub(crate) Vec<Reply>);

/// A read, served by one node from its applied state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Query {
    Get(SessionId),
    Len,
    ByClient(String),
    Journal(SessionId),
    Export,
}

/// What an operation or a query answers.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) enum Reply {
    Session(Arc<Session>),
    /// The session a create or an update wrote, without its data: the
    /// writer has the data, so 2 KB do not travel back (nor get tagged and
    /// copied) for every write.
    Written(Arc<Session>),
    Missing,
    Sessions(Vec<Arc<Session>>),
    Removed(bool),
    Count(usize),
    Seq(u64),
    Journal(#[serde(with = "as_json")] Vec<JournalRecord>),
    Dumps(#[serde(with = "as_json")] Vec<SessionDump>),
    Done,
    /// The id drawn for a create is taken: the leader draws again.
    Taken,
    Refused(Refusal),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(s) | Self::Written(s) => f.debug_tuple("Session").field(s).finish(),
            Self::Sessions(s) => f.debug_tuple("Sessions").field(&s.len()).finish(),
            Self::Refused(r) => f.debug_tuple("Refused").field(r).finish(),
            Self::Count(n) => f.debug_tuple("Count").field(n).finish(),
            _ => f.write_str("Reply"),
        }
    }
}

/// A store error a replica can answer with, in a form that crosses the
/// wire; the client turns it back into the [`StoreError`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Refusal {
    Conflict {
        expected: u64,
        actual: u64,
    },
    NotFound,
    TooManySessions {
        limit: usize,
    },
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    JournalFull {
        limit: usize,
    },
    NoJournalRecord {
        seq: u64,
    },
    JournalTransition {
        seq: u64,
        from: JournalStatus,
        to: JournalStatus,
    },
    /// Anything else, as its message.
    Other(String),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { expected, actual } => Self::Conflict { expected, actual },
            StoreError::NotFound => Self::NotFound,
            StoreError::TooManySessions { limit } => Self::TooManySessions { limit },
            StoreError::TooLarge { bytes, limit } => Self::TooLarge { bytes, limit },
            StoreError::JournalFull { limit } => Self::JournalFull { limit },
            StoreError::NoJournalRecord { seq } => Self::NoJournalRecord { seq },
            StoreError::JournalTransition { seq, from, to } => {
                Self::JournalTransition { seq, from, to }
            }
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<Refusal> for StoreError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Conflict { expected, actual } => Self::Conflict { expected, actual },
            Refusal::NotFound => Self::NotFound,
            Refusal::TooManySessions { limit } => Self::TooManySessions { limit },
            Refusal::TooLarge { bytes, limit } => Self::TooLarge { bytes, limit },
            Refusal::JournalFull { limit } => Self::JournalFull { limit },
            Refusal::NoJournalRecord { seq } => Self::NoJournalRecord { seq },
            Refusal::JournalTransition { seq, from, to } => {
                Self::JournalTransition { seq, from, to }
            }
            Refusal::Other(message) => Self::Backend(message.into()),
        }
    }
}

fn answer<T>(result: Result<T, StoreError>, ok: impl FnOnce(T) -> Reply) -> Reply {
    result.map_or_else(|e| Reply::Refused(e.into()), ok)
}

/// Applies `op` to `store` at time `at` (milliseconds since the epoch, the
/// leader's stamp), as every replica does in log order.
pub(crate) fn apply(store: &MemoryStore, default_ttl: Duration, command: Command) -> Reply {
    let Command { at, new_id, op } = command;
    let ttl = |ms: Option<u64>| ms.map(Duration::from_millis);
    match op {
        Op::Create {
            client_id,
            transport,
            data,
            ttl_ms,
        } => {
            let Some(id) = new_id else {
                return Reply::Refused(Refusal::Other("a create without an id".into()));
            };
            if let Err(e) = store.admit(&data, at) {
                return Reply::Refused(e.into());
            }
            let new = NewSession {
                client_id,
                transport,
                data,
                ttl: ttl(ttl_ms),
            };
            match store.insert_absent(Session::create(new, id, at, default_ttl)) {
                Ok(session) => Reply::Session(session),
                Err(_) => {
                    store.release();
                    Reply::Taken
                }
            }
        }
        Op::Update {
            id,
            expected_version,
            data,
            ttl_ms,
        } => answer(
            store.update_at(&id, expected_version, data, ttl(ttl_ms), at),
            Reply::Session,
        ),
        Op::Touch(id) => answer(store.touch_at(&id, at), Reply::Session),
        Op::Delete(id) => answer(store.delete_now(&id), Reply::Removed),
        Op::Expire => Reply::Count(store.sweep_at(at)),
        Op::JournalAppend { id, entry } => {
            answer(store.journal_append_at(&id, entry, at), Reply::Seq)
        }
        Op::JournalMark { id, seq, status } => {
            answer(store.journal_mark_at(&id, seq, status, at), |()| {
                Reply::Done
            })
        }
        Op::Import(dumps) => answer(store.import_at(dumps, at), Reply::Count),
    }
}

/// Answers `query` from `store` (its own clock hides what has expired).
pub(crate) async fn read(store: &MemoryStore, query: Query) -> Reply {
    use crate::store::{SessionExport, SessionJournal};
    match query {
        Query::Get(id) => answer(store.get(&id).await, |s| {
            s.map_or(Reply::Missing, Reply::Session)
        }),
        Query::Len => answer(store.len().await, Reply::Count),
        Query::ByClient(client) => answer(store.by_client(&client).await, Reply::Sessions),
        Query::Journal(id) => answer(store.journal(&id).await, Reply::Journal),
        Query::Export => answer(store.export().await, Reply::Dumps),
    }
}

/// Journals and dumps cross the wire as JSON text: their serde shapes
/// (flattened and skipped fields) are JSON's, which postcard cannot carry.
mod as_json {
    use serde::de::{DeserializeOwned, Error as _};
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(value).map_err(S::Error::custom)?;
        serializer.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text).map_err(D::Error::custom)
    }
}
