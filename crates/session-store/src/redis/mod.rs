//! The Redis backend (feature `redis`): sessions in the Redis a service
//! already runs, through redis-rs's `ConnectionManager` (reconnects by
//! itself, multiplexes every call over one connection).
//!
//! - Each session one string under `{prefix}s:{id}` (its data, then its
//!   metadata in a fixed-width block: see `codec`), so a read is one `GET`,
//!   with Redis's own expiry (`PEXPIRE`, one second past the session's
//!   TTL), so every client of the store sees it go; reads also go by the
//!   expiry on the store's clock, so an expired session is absent on every
//!   read at once.
//! - Compare-and-swap, create, touch, delete and the journal are Lua
//!   scripts: atomic on the server in one round trip (a WATCH/MULTI loop
//!   would take several and retry under contention). New data never
//!   passes through Lua: it is staged by a native `SET` in the same
//!   MULTI/EXEC as the script (see `scripts`).
//! - A client's sessions are a set (`{prefix}c:{client}`) kept with them;
//!   ids whose session Redis expired are dropped from it when read and by
//!   cleanup. A sorted set of ids (`{prefix}x`) by a lower bound of their
//!   expiry (see `scripts`) serves `len`, `max_sessions` and cleanup. The
//!   journal is a hash beside the session
//!   (`{prefix}j:{id}`), expiring with it.
//! - A marker (`{prefix}epoch`) is checked by every call that does not
//!   find its session there (a session that is there was written after
//!   the marker, so it was not lost) and by every other call: a server
//!   that restarted without persistence (or was flushed) has lost it, and
//!   the next such call says so ([`StoreError::Lost`]) instead of serving
//!   an empty or partial store as if nothing happened; the store then
//!   carries on with a new marker.
//! - Export reads each session consistently, not all of them at one
//!   instant; import replaces the store's keys, not atomically (a backup is
//!   checked whole before anything changes).

mod codec;
mod config;
mod export;
mod known;
mod scripts;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue, RedisError, Script, Value};

use crate::builder::StoreBuilder;
use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{JournalEntry, JournalRecord, JournalStatus};
use crate::observer::{Event, Events};
use crate::session::{NewSession, Session};
use crate::store::{ExpiredCleanup, SessionJournal, SessionStore};
use crate::sweeper::Sweeper;
use codec::{
    StoredRecord, decode, decode_journal, decode_meta, millis, status_code, status_of, wrong_type,
};
pub use config::RedisConfig;
use scripts::Scripts;

/// How long Redis keeps a session past its TTL: reads go by the store's
/// clock, so a store whose clock runs a little ahead of Redis's never sees
/// a session vanish early.
const SLACK_MS: u64 = 1_000;

/// Expired sessions removed per cleanup script, so one never blocks Redis
/// for long.
const CLEANUP_BATCH: u64 = 500;

/// Sessions in Redis, shared by every process pointed at the same Redis
/// and prefix. Clones share the connection and the expiry sweep.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use keel_session_store::{NewSession, RedisConfig, RedisStore, SessionStore, StoreConfig};
///
/// let redis = redis::Client::open("redis://127.0.0.1:6379")?;
/// let connection = redis.get_connection_manager().await?;
/// let store = RedisStore::builder(connection, RedisConfig::default(), StoreConfig::default())
///     .build()
///     .await?;
/// let s = store.create(NewSession::new("client-7", "http")).await?;
/// store.update(&s.id, s.version, s.data.clone()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    redis: ConnectionManager,
    prefix: String,
    /// The keys every call names, formatted once: the epoch marker, the
    /// expiry index, the staging key, the prefix of client sets.
    epoch_key: String,
    index_key: String,
    stage_key: String,
    client_prefix: String,
    scripts: Scripts,
    /// The heads of sessions read or written lately (see `known`).
    known: known::Known,
    /// The marker this store last saw (see the module docs).
    epoch: Mutex<String>,
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    events: Events,
    runtime: tokio::runtime::Handle,
    sweeper: Sweeper,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder over `redis` (a redis-rs connection manager: the caller
    /// opens it, so keel never holds the URL or its password), the key
    /// prefix in `redis_config` and the store `config`.
    pub fn builder(
        redis: ConnectionManager,
        redis_config: RedisConfig,
        config: StoreConfig,
    ) -> StoreBuilder<(ConnectionManager, RedisConfig)> {
        StoreBuilder::new((redis, redis_config), config)
    }

    /// The name the store reports under (`StoreBuilder::name`).
    pub fn name(&self) -> &str {
        self.inner.events.name()
    }
}

impl StoreBuilder<(ConnectionManager, RedisConfig)> {
    /// Checks the configs, adopts (or sets) the epoch marker, then starts
    /// the expiry sweep (every `cleanup_interval`) on the current tokio
    /// runtime.
    ///
    /// # Errors
    /// [`StoreError::Config`] naming a bad field; [`StoreError::Backend`]
    /// when Redis cannot be reached, or outside a tokio runtime.
    pub async fn build(self) -> Result<RedisStore, StoreError> {
        let events = self.events();
        let StoreBuilder {
            backend: (redis, redis_config),
            config,
            clock,
            ..
        } = self;
        config.validate()?;
        redis_config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Backend("RedisStore needs a tokio runtime (its sweep runs on it)".into())
        })?;
        let prefix = redis_config.prefix;
        let epoch = adopt_epoch(&mut redis.clone(), &prefix).await?;
        let inner = Arc::new(Inner {
            redis,
            epoch_key: format!("{prefix}epoch"),
            index_key: format!("{prefix}x"),
            stage_key: format!("{prefix}stage"),
            client_prefix: format!("{prefix}c:"),
            prefix,
            scripts: Scripts::new(),
            known: known::Known::new(),
            epoch: Mutex::new(epoch),
            config,
            clock,
            events,
            runtime,
            sweeper: Sweeper::default(),
        });
        inner.sweeper.start(
            Arc::downgrade(&inner),
            inner.config.cleanup_interval,
            |inner| {
                // The sweeper calls this on a blocking thread.
                let _ = inner.runtime.block_on(inner.cleanup());
            },
        )?;
        Ok(RedisStore { inner })
    }
}

/// The store's marker: the one there, or a fresh one set now.
async fn adopt_epoch(redis: &mut ConnectionManager, prefix: &str) -> Result<String, StoreError> {
    let key = format!("{prefix}epoch");
    let fresh = SessionId::random()?.to_string();
    let _: Value = redis::cmd("SET")
        .arg(&key)
        .arg(&fresh)
        .arg("NX")
        .query_async(redis)
        .await
        .map_err(backend)?;
    redis::cmd("GET")
        .arg(&key)
        .query_async(redis)
        .await
        .map_err(backend)
}

fn backend(e: RedisError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// A script failed because the marker is gone or changed.
fn is_lost(e: &RedisError) -> bool {
    e.code() == Some("KEEL_LOST") || e.to_string().contains("KEEL_LOST")
}

/// A key of the store's holds another Redis type (directly, or inside a
/// pipeline's failure).
fn is_wrong_type(e: &RedisError) -> bool {
    e.code() == Some("WRONGTYPE") || e.to_string().contains("WRONGTYPE")
}

/// A session's value is not in this store's layout (a script said so).
fn is_foreign(e: &RedisError) -> bool {
    e.code() == Some(scripts::FORMAT_ERROR) || e.to_string().contains(scripts::FORMAT_ERROR)
}

/// The server does not know the script (it restarted, or was told
/// `SCRIPT FLUSH`): load it and run again.
fn is_no_script(e: &RedisError) -> bool {
    e.code() == Some("NOSCRIPT") || e.to_string().contains("NOSCRIPT")
}

/// The conflict a script reported, with the version it found.
fn conflict(
    inner: &Inner,
    id: SessionId,
    expected: u64,
    found: Option<&Value>,
) -> Result<Arc<Session>, StoreError> {
    inner.events.emit(|name| Event::Conflict { name });
    let actual = match found {
        Some(Value::BulkString(v)) => String::from_utf8_lossy(v).into_owned(),
        _ => String::new(),
    };
    Err(StoreError::Conflict {
        expected,
        actual: millis(id, "version", Some(&actual))?,
    })
}

/// A number as the fixed block holds it (20 digits).
fn digits(n: u64) -> String {
    format!("{n:020}")
}

/// What a script call sends with it, in one MULTI/EXEC.
#[derive(Clone, Copy)]
enum With<'v> {
    /// The script alone (no transaction).
    Nothing,
    /// A `SET` of the staging key to this value, expiring after these
    /// milliseconds (what the script renames keeps them), before the
    /// script.
    Staged(&'v [u8], u64),
    /// A `GET` of this key, after the script.
    ThenGet(&'v str),
}

/// The connection dropped under the call: a write may or may not have
/// been applied.
fn is_cut(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// Whether a call only reads (retried once when the connection was cut:
/// the manager reconnects) or writes (reported as `OutcomeUnknown`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now_millis()
    }

    fn key(&self, kind: &str, id: &SessionId) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// The keys and epoch of a script on session `id` (marker, session,
    /// expiry index, journal); the caller adds the rest.
    fn on_session(&self, call: &mut Cmd, id: &SessionId, epoch: &str) {
        call.arg(4)
            .arg(&self.epoch_key)
            .arg(self.key("s", id))
            .arg(&self.index_key)
            .arg(self.key("j", id))
            .arg(epoch);
    }

    /// The keys and epoch of a script on the whole store (marker, expiry
    /// index); the caller adds the rest.
    fn on_index(&self, call: &mut Cmd, epoch: &str) {
        call.arg(2)
            .arg(&self.epoch_key)
            .arg(&self.index_key)
            .arg(epoch);
    }

    fn epoch(&self) -> String {
        self.epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `script` with the keys and arguments `args` adds (given the
    /// epoch), and what `with` says goes with it, for session `id` (if
    /// one): a lost marker, a value in another layout and a cut
    /// connection handled as `mode` says, an unknown script loaded and
    /// run again. `R` is the script's reply, or for a transaction the
    /// replies not ignored: `(reply,)` staged, `(reply, value)` with a
    /// `GET`.
    async fn run<R: FromRedisValue>(
        &self,
        mode: Mode,
        id: Option<SessionId>,
        script: &Script,
        with: With<'_>,
        args: impl Fn(&str, &mut Cmd),
    ) -> Result<R, StoreError> {
        let (mut retried, mut loaded) = (false, false);
        loop {
            let mut call = redis::cmd("EVALSHA");
            call.arg(script.get_hash());
            args(&self.epoch(), &mut call);
            let mut redis = self.redis.clone();
            let result = match with {
                With::Nothing => call.query_async(&mut redis).await,
                With::Staged(value, px) => {
                    let mut pipe = redis::pipe();
                    pipe.atomic()
                        .cmd("SET")
                        .arg(&self.stage_key)
                        .arg(value)
                        .arg("PX")
                        .arg(px)
                        .ignore()
                        .add_command(call);
                    pipe.query_async(&mut redis).await
                }
                With::ThenGet(key) => {
                    let mut pipe = redis::pipe();
                    pipe.atomic().add_command(call).cmd("GET").arg(key);
                    pipe.query_async(&mut redis).await
                }
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if is_lost(&e) => return Err(self.lost().await),
                // The script did not run: load it and go again.
                Err(e) if is_no_script(&e) && !loaded => {
                    loaded = true;
                    script.load_async(&mut redis).await.map_err(backend)?;
                }
                // Another program wrote a key of the store's as another
                // type, or a value in another layout: that session only.
                Err(e) if is_wrong_type(&e) => {
                    return Err(id.map_or_else(|| backend(e.clone()), |id| wrong_type(id, &e)));
                }
                Err(e) if is_foreign(&e) => {
                    return Err(id.map_or_else(|| backend(e.clone()), codec::foreign));
                }
                Err(e) if is_cut(&e) => match mode {
                    Mode::Read if !retried => retried = true,
                    Mode::Read => return Err(backend(e)),
                    Mode::Write => return Err(StoreError::OutcomeUnknown(Box::new(e))),
                },
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// The marker is gone: adopt the new one (or set it) and say what
    /// happened.
    /// Reads the marker: `Lost` if it is gone or another store's.
    async fn check_marker(&self) -> Result<(), StoreError> {
        let marker: Option<String> = redis::cmd("GET")
            .arg(&self.epoch_key)
            .query_async(&mut self.redis.clone())
            .await
            .map_err(backend)?;
        if marker.as_deref() == Some(self.epoch().as_str()) {
            Ok(())
        } else {
            Err(self.lost().await)
        }
    }

    async fn lost(&self) -> StoreError {
        match adopt_epoch(&mut self.redis.clone(), &self.prefix).await {
            Ok(epoch) => {
                *self.epoch.lock().unwrap_or_else(PoisonError::into_inner) = epoch;
                StoreError::Lost {
                    reason: "the Redis server lost the store's data (restarted without persistence, or flushed); sessions written before are gone, the store carries on empty".into(),
                }
            }
            Err(e) => e,
        }
    }

    /// Removes expired sessions in batches; reports how many.
    async fn cleanup(&self) -> Result<usize, StoreError> {
        let now = self.now();
        let mut removed = 0usize;
        loop {
            let (looked, done): (u64, u64) = self
                .run(
                    Mode::Write,
                    None,
                    &self.scripts.cleanup,
                    With::Nothing,
                    |epoch, call| {
                        self.on_index(call, epoch);
                        call.arg(now).arg(CLEANUP_BATCH).arg(&self.prefix);
                    },
                )
                .await?;
            removed += usize::try_from(done).unwrap_or(usize::MAX);
            if looked < CLEANUP_BATCH {
                break;
            }
        }
        if removed > 0 {
            self.events.emit(|name| Event::Expired {
                name,
                count: removed,
            });
        }
        Ok(removed)
    }
}

impl SessionStore for RedisStore {
    async fn create(&self, new: NewSession) -> Result<Arc<Session>, StoreError> {
        let inner = &*self.inner;
        inner.config.check_size(&new.data)?;
        let now = inner.now();
        let mut session = Session::create(new, SessionId::random()?, now, inner.config.default_ttl);
        let ttl = u64::try_from(session.ttl.as_millis()).unwrap_or(u64::MAX);
        let limit = inner
            .config
            .max_sessions
            .map(|l| u64::try_from(l).unwrap_or(u64::MAX));
        let value = codec::encode(&session, false);
        let keep = ttl.saturating_add(SLACK_MS);
        loop {
            let ((created, settled),): ((i64, u64),) = inner
                .run(
                    Mode::Write,
                    Some(session.id),
                    &inner.scripts.create,
                    With::Staged(&value, keep),
                    |epoch, call| {
                        let limit = limit.map_or_else(|| " ".repeat(20), digits);
                        call.arg(0)
                            .arg(format!(
                                "{now:020}{limit}{:020}{}",
                                session.expires_at(),
                                session.id
                            ))
                            .arg(&inner.prefix)
                            .arg(epoch)
                            .arg(&*session.client_id);
                    },
                )
                .await?;
            if settled > 0 {
                let count = usize::try_from(settled).unwrap_or(usize::MAX);
                inner.events.emit(|name| Event::Expired { name, count });
            }
            match created {
                1 => break,
                0 => {
                    return Err(StoreError::TooManySessions {
                        limit: inner.config.max_sessions.unwrap_or(0),
                    });
                }
                _ => session.id = SessionId::random()?,
            }
        }
        inner.known.remember(&session.id, &value);
        inner.events.emit(|name| Event::Created { name });
        Ok(Arc::new(session))
    }

    /// One `GET`, not a script (a Lua call costs the server several times
    /// a native read); the marker is read only on a miss.
    async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let inner = &*self.inner;
        let now = inner.now();
        let key = inner.key("s", id);
        let mut retried = false;
        let value = loop {
            let read: Result<Option<Vec<u8>>, RedisError> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut inner.redis.clone())
                .await;
            match read {
                Ok(read) => break read,
                Err(e) if is_cut(&e) && !retried => retried = true,
                Err(e) if is_wrong_type(&e) => return Err(wrong_type(*id, &e)),
                Err(e) => return Err(backend(e)),
            }
        };
        let Some(value) = value else {
            // Only a miss can hide a loss: a session that is there was
            // written after the marker was.
            return inner.check_marker().await.map(|()| None);
        };
        inner.known.remember(id, &value);
        Ok(decode(*id, value, now)?.map(Arc::new))
    }

    async fn update_with_ttl(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
    ) -> Result<Arc<Session>, StoreError> {
        let inner = &*self.inner;
        inner.config.check_size(&data)?;
        let now = inner.now();
        let ttl_ms = ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let data = match inner.known.get(id) {
            Some(head) => match inner
                .update_known(id, expected_version, (data, ttl_ms), &head, now)
                .await
            {
                known::Tried::Done(done) => return done,
                known::Tried::Not(data) => {
                    inner.known.forget(id);
                    data
                }
            },
            None => data,
        };
        // Staged with the session's Redis ttl if it is the one given, or
        // the default (the script sets it only when the guess was wrong).
        let default_ttl = u64::try_from(inner.config.default_ttl.as_millis()).unwrap_or(u64::MAX);
        let keep = ttl_ms.unwrap_or(default_ttl).saturating_add(SLACK_MS);
        let ttl = match ttl_ms {
            Some(ms) => format!("1{ms:020}"),
            None => format!("0{:20}", ""),
        };
        let packed = format!(
            "{expected_version:020}{:020}{now:020}{now:020}{ttl}{keep:020}{SLACK_MS:020}{id}",
            expected_version.saturating_add(1)
        );
        let (reply,): (Vec<Value>,) = inner
            .run(
                Mode::Write,
                Some(*id),
                &inner.scripts.update,
                With::Staged(data.as_json().as_bytes(), keep),
                |epoch, call| {
                    call.arg(0).arg(&packed).arg(&inner.prefix).arg(epoch);
                },
            )
            .await?;
        match reply.first() {
            Some(Value::Int(2)) => {
                let tail = match reply.get(1) {
                    Some(Value::BulkString(tail)) => tail.as_slice(),
                    _ => &[],
                };
                let (mut session, _) = decode_meta(*id, tail)?;
                inner.known.remember(id, tail);
                session.data = data;
                Ok(Arc::new(session))
            }
            Some(Value::Int(1)) => conflict(inner, *id, expected_version, reply.get(1)),
            Some(Value::Int(3)) => {
                inner.events.emit(|name| Event::Expired { name, count: 1 });
                Err(StoreError::NotFound)
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn touch(&self, id: &SessionId) -> Result<Arc<Session>, StoreError> {
        let inner = &*self.inner;
        let now = inner.now();
        let key = inner.key("s", id);
        let at = digits(now);
        let (touched, value): (i64, Option<Vec<u8>>) = inner
            .run(
                Mode::Write,
                Some(*id),
                &inner.scripts.touch,
                With::ThenGet(&key),
                |epoch, call| {
                    inner.on_session(call, id, epoch);
                    call.arg(&at)
                        .arg(id.to_string())
                        .arg(SLACK_MS)
                        .arg(&inner.prefix);
                },
            )
            .await?;
        match (touched, value) {
            (1, Some(value)) => {
                inner.known.remember(id, &value);
                decode(*id, value, now)?
                    .map(Arc::new)
                    .ok_or(StoreError::NotFound)
            }
            (-1, _) => {
                inner.events.emit(|name| Event::Expired { name, count: 1 });
                Err(StoreError::NotFound)
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        inner.known.forget(id);
        let removed: i64 = inner
            .run(
                Mode::Write,
                Some(*id),
                &inner.scripts.delete,
                With::Nothing,
                |epoch, call| {
                    inner.on_session(call, id, epoch);
                    call.arg(id.to_string()).arg(&inner.prefix);
                },
            )
            .await?;
        if removed > 0 {
            inner.events.emit(|name| Event::Deleted { name });
        }
        Ok(removed > 0)
    }

    /// Every session in the expiry index, expired ones not yet cleaned up
    /// included (as every store counts).
    async fn len(&self) -> Result<usize, StoreError> {
        let inner = &*self.inner;
        let count: u64 = inner
            .run(
                Mode::Read,
                None,
                &inner.scripts.len,
                With::Nothing,
                |epoch, call| inner.on_index(call, epoch),
            )
            .await?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    async fn by_client(&self, client_id: &str) -> Result<Vec<Arc<Session>>, StoreError> {
        let inner = &*self.inner;
        let now = inner.now();
        let client_set = format!("{}{client_id}", inner.client_prefix);
        let session_prefix = format!("{}s:", inner.prefix);
        let reply: Vec<Vec<u8>> = inner
            .run(
                Mode::Read,
                None,
                &inner.scripts.by_client,
                With::Nothing,
                |epoch, call| {
                    call.arg(2)
                        .arg(&inner.epoch_key)
                        .arg(&client_set)
                        .arg(epoch)
                        .arg(&session_prefix);
                },
            )
            .await?;
        let mut found = Vec::with_capacity(reply.len() / 2);
        let mut reply = reply.into_iter();
        while let (Some(id), Some(value)) = (reply.next(), reply.next()) {
            let id: SessionId = String::from_utf8_lossy(&id).parse()?;
            if let Some(session) = decode(id, value, now)? {
                found.push(Arc::new(session));
            }
        }
        found.sort_by_key(|s| (s.created_at, s.id));
        Ok(found)
    }
}

impl ExpiredCleanup for RedisStore {
    async fn cleanup_expired(&self) -> Result<usize, StoreError> {
        self.inner.cleanup().await
    }
}

impl SessionJournal for RedisStore {
    async fn journal_append(&self, id: &SessionId, entry: JournalEntry) -> Result<u64, StoreError> {
        let inner = &*self.inner;
        let now = inner.now();
        let record = serde_json::to_string(&StoredRecord { at: now, entry })
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        // The session gets a journal: its updates go the general way.
        inner.known.forget(id);
        let reply: Vec<i64> = inner
            .run(
                Mode::Write,
                Some(*id),
                &inner.scripts.journal_append,
                With::Nothing,
                |epoch, call| {
                    inner.on_session(call, id, epoch);
                    call.arg(now)
                        .arg(inner.config.max_journal_records)
                        .arg(&record);
                },
            )
            .await?;
        match reply.as_slice() {
            [1, seq] => Ok(seq.unsigned_abs()),
            [-1] => Err(StoreError::JournalFull {
                limit: inner.config.max_journal_records,
            }),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn journal_mark(
        &self,
        id: &SessionId,
        seq: u64,
        status: JournalStatus,
    ) -> Result<(), StoreError> {
        crate::journal::finishing(seq, status)?;
        let inner = &*self.inner;
        let now = inner.now();
        let reply: Vec<String> = inner
            .run(
                Mode::Write,
                Some(*id),
                &inner.scripts.journal_mark,
                With::Nothing,
                |epoch, call| {
                    inner.on_session(call, id, epoch);
                    call.arg(now).arg(seq).arg(status_code(status));
                },
            )
            .await?;
        match reply.first().map(String::as_str) {
            Some("3") => Ok(()),
            Some("2") => Err(StoreError::JournalTransition {
                seq,
                from: status_of(*id, reply.get(1).map(String::as_str).unwrap_or_default())?,
                to: status,
            }),
            Some("1") => Err(StoreError::NoJournalRecord { seq }),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn journal(&self, id: &SessionId) -> Result<Vec<JournalRecord>, StoreError> {
        let inner = &*self.inner;
        let now = inner.now();
        let pairs: Option<Vec<String>> = inner
            .run(
                Mode::Read,
                Some(*id),
                &inner.scripts.journal,
                With::Nothing,
                |epoch, call| {
                    inner.on_session(call, id, epoch);
                    call.arg(now);
                },
            )
            .await?;
        let pairs = pairs.ok_or(StoreError::NotFound)?;
        decode_journal(*id, &pairs)
    }
}
