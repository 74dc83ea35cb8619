//! Session storage behind one [`SessionStore`] trait, so that an
//! application can move from one backend to another unchanged.
//!
//! - [`MemoryStore`] (feature `memory`, default): sharded in-memory maps
//!   with an expiry index; expired sessions are absent on read and freed by
//!   a background sweep.
//! - `SledStore` (feature `sled`): sessions on disk in sled; in durable
//!   mode an acknowledged write survives `kill -9`, and concurrent writers
//!   share each fsync (group commit).
//! - `PgStore` (feature `postgres`) and `MySqlStore` (feature `mysql`;
//!   both: `sql`): a sessions table in PostgreSQL, MySQL or MariaDB through
//!   a keel-pool-core pool, shared by every instance of a service;
//!   versioned migrations, compare-and-swap in one statement.
//! - `RedisStore` (feature `redis`): sessions in Redis with its own expiry,
//!   compare-and-swap in Lua scripts, a lost server reported.
//! - `raft::RaftSessionStore` (feature `raft`): sessions replicated across
//!   processes by openraft (`raft::RaftNode`, which `keel session-node`
//!   runs); a minority refuses writes, reads are linearizable unless asked
//!   otherwise.
//!
//! With the `tower-sessions` feature, `TowerSessions` makes any of them a
//! `tower_sessions::SessionStore` for axum applications.
//!
//! Every backend also keeps a bounded per-session journal of operations
//! ([`SessionJournal::journal_append`], committed or aborted later), and
//! writes and reads one backup format ([`SessionExport::backup`]: framed,
//! checksummed, LZ4-compressed, optionally AES-256-GCM encrypted), so a
//! backup taken from one backend restores into another; a corrupt,
//! truncated or wrongly keyed backup is refused and restores nothing.
//!
//! Every backend gives each session a 128-bit id from the OS CSPRNG, hides
//! expired sessions on every read, and updates by compare-and-swap on a
//! version number, so that a stale writer gets [`StoreError::Conflict`]
//! instead of silently losing another writer's update:
//!
//! ```
//! use keel_session_store::{MemoryStore, NewSession, SessionStore, StoreConfig, StoreError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new(StoreConfig::default())?;
//! let s = store.create(NewSession::new("client-1", "websocket")).await?;
//! store.update(&s.id, s.version, s.data.clone()).await?;
//! // A writer still holding the old version is told so.
//! let stale = store.update(&s.id, s.version, s.data.clone()).await;
//! assert!(matches!(stale, Err(StoreError::Conflict { .. })));
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
// Without a backend the helpers the backends share have no caller.
#![cfg_attr(
    not(any(feature = "memory", feature = "sled")),
    allow(
        dead_code,
        reason = "helpers of the in-process backends (journal edits, the population count) with none compiled in"
    )
)]

mod backup;
mod builder;
mod clock;
mod config;
mod data;
mod error;
mod id;
mod journal;
#[cfg(feature = "memory")]
mod memory;
mod observer;
mod population;
#[cfg(feature = "raft")]
#[cfg_attr(docsrs, doc(cfg(feature = "raft")))]
pub mod raft;
#[cfg(feature = "redis")]
mod redis;
mod session;
#[cfg(feature = "sled")]
mod sled;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod sql;
mod store;
mod sweeper;
#[cfg(feature = "tower-sessions")]
mod tower_sessions;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisConfig, RedisStore};
#[cfg(feature = "sled")]
#[cfg_attr(docsrs, doc(cfg(feature = "sled")))]
pub use self::sled::{Durability, SledConfig, SledStore};
pub use backup::{BackupError, BackupKey, BackupOptions, BackupSummary, SessionDump};
pub use builder::StoreBuilder;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, StoreConfig};
pub use data::{Data, DataError};
pub use error::StoreError;
pub use id::{IdError, SessionId};
pub use journal::{JournalEntry, JournalRecord, JournalStatus};
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use memory::MemoryStore;
pub use observer::{Event, NoopObserver, Observer};
pub use session::{NewSession, Session};
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use sql::MySqlStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use sql::PgStore;
#[cfg(any(feature = "postgres", feature = "mysql"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "mysql"))))]
pub use sql::{SchemaError, SqlConfig};
pub use store::{ExpiredCleanup, SessionExport, SessionJournal, SessionStore};
#[cfg(feature = "tower-sessions")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-sessions")))]
pub use tower_sessions::{SaveMissing, TowerSessions};
