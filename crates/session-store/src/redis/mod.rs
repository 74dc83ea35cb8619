//! The Redis backend (feature `redis`): sessions in the Redis a service
//! already runs, through redis-rs's `ConnectionManager` (reconnects by
//! itself, multiplexes every call over one connection).
//!
//! - Each session a hash under `{prefix}s:{id}` with Redis's own expiry
//!   (`PEXPIRE`, one second past the session's TTL), so every client of
//!   the store sees it go; reads also go by the expiry on the store's
//!   clock, so an expired session is absent on every read at once.
//! - Compare-and-swap, create, touch, delete and the journal are Lua
//!   scripts: atomic on the server in one round trip (a WATCH/MULTI loop
//!   would take several and retry under contention).
//! - A client's sessions are a set (`{prefix}c:{client}`) kept with them;
//!   ids whose session Redis expired are dropped from it when read and by
//!   cleanup. A sorted set of ids by expiry (`{prefix}x`) serves `len`,
//!   `max_sessions` and cleanup. The journal is a hash beside the session
//!   (`{prefix}j:{id}`), expiring with it.
//! - A marker (`{prefix}epoch`) is checked by every call: a server that
//!   restarted without persistence (or was flushed) has lost it, and the
//!   next call says so ([`StoreError::Lost`]) instead of serving an empty
//!   or partial store as if nothing happened; the store then carries on
//!   with a new marker.
//! - Export reads each session consistently, not all of them at one
//!   instant; import replaces the store's keys, not atomically (a backup is
//!   checked whole before anything changes).

mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisError, Value};
use serde::{Deserialize, Serialize};

use crate::backup::{self, SessionDump};
use crate::builder::StoreBuilder;
use crate::clock::Clock;
use crate::config::{ConfigError, StoreConfig};
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{Journal, JournalEntry, JournalRecord, JournalStatus};
use crate::observer::{Event, Events};
use crate::session::{NewSession, Session};
use crate::store::{ExpiredCleanup, SessionExport, SessionJournal, SessionStore};
use crate::sweeper::Sweeper;
use scripts::Scripts;

/// How long Redis keeps a session past its TTL: reads go by the store's
/// clock, so a store whose clock runs a little ahead of Redis's never sees
/// a session vanish early.
const SLACK_MS: u64 = 1_000;

/// Expired sessions removed per cleanup script, so one never blocks Redis
/// for long.
const CLEANUP_BATCH: u64 = 500;

/// Where the store keeps its keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Prefix of every key (default `keel:`); stores with different
    /// prefixes share a Redis without meeting.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "keel:".into(),
        }
    }
}

impl RedisConfig {
    /// Keys under `prefix`.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Checks the prefix: not empty, printable, no spaces or glob
    /// characters (export finds the keys by pattern).
    ///
    /// # Errors
    /// A [`ConfigError`] naming `prefix`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.prefix;
        if p.is_empty() || p.len() > 64 {
            return Err(ConfigError::new("prefix", "must be 1 to 64 characters"));
        }
        if p.chars()
            .any(|c| !c.is_ascii_graphic() || "*?[]\\".contains(c))
        {
            return Err(ConfigError::new(
                "prefix",
                format!("{p:?} holds a space, a control or a glob character"),
            ));
        }
        Ok(())
    }
}

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
    scripts: Scripts,
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
            prefix,
            scripts: Scripts::new(),
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

/// A millisecond field of a session hash.
fn millis(id: SessionId, name: &str, value: Option<&String>) -> Result<u64, StoreError> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Unreadable {
            id,
            reason: format!("field `{name}` is {value:?}, not a count of milliseconds"),
        })
}

/// A session from the fields `c, t, ca, ua, la, ttl, v, d, e`.
fn decode(id: SessionId, f: &[Option<String>]) -> Result<Session, StoreError> {
    let field = |i: usize| f.get(i).and_then(Option::as_ref);
    let text = |i: usize, name: &str| {
        field(i).cloned().ok_or_else(|| StoreError::Unreadable {
            id,
            reason: format!("field `{name}` is missing"),
        })
    };
    let data = Data::from_json(text(7, "d")?).map_err(|e| StoreError::Unreadable {
        id,
        reason: format!("data: {e}"),
    })?;
    Ok(Session {
        id,
        client_id: text(0, "c")?.into(),
        transport: text(1, "t")?.into(),
        created_at: millis(id, "ca", field(2))?,
        updated_at: millis(id, "ua", field(3))?,
        last_activity: millis(id, "la", field(4))?,
        ttl: Duration::from_millis(millis(id, "ttl", field(5))?),
        version: millis(id, "v", field(6))?,
        data,
    })
}

/// What the journal keeps of a record besides its sequence and status.
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    at: u64,
    #[serde(flatten)]
    entry: JournalEntry,
}

fn status_code(status: JournalStatus) -> &'static str {
    match status {
        JournalStatus::Pending => "0",
        JournalStatus::Committed => "1",
        JournalStatus::Aborted => "2",
    }
}

fn status_of(id: SessionId, code: &str) -> Result<JournalStatus, StoreError> {
    match code {
        "0" => Ok(JournalStatus::Pending),
        "1" => Ok(JournalStatus::Committed),
        "2" => Ok(JournalStatus::Aborted),
        other => Err(StoreError::Unreadable {
            id,
            reason: format!("journal status {other:?} is none of 0, 1, 2"),
        }),
    }
}

/// A journal hash (`seq` → record, `seq:s` → status) as records in order.
fn decode_journal(id: SessionId, pairs: &[String]) -> Result<Vec<JournalRecord>, StoreError> {
    let fields: HashMap<&str, &str> = pairs
        .chunks_exact(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    let mut records = Vec::new();
    for (field, value) in &fields {
        let Ok(seq) = field.parse::<u64>() else {
            continue;
        };
        let stored: StoredRecord =
            serde_json::from_str(value).map_err(|e| StoreError::Unreadable {
                id,
                reason: format!("journal record {seq}: {e}"),
            })?;
        let status = fields
            .get(format!("{seq}:s").as_str())
            .copied()
            .unwrap_or("0");
        records.push(JournalRecord {
            seq,
            at: stored.at,
            entry: stored.entry,
            status: status_of(id, status)?,
        });
    }
    records.sort_by_key(|r| r.seq);
    Ok(records)
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now_millis()
    }

    fn key(&self, kind: &str, id: &SessionId) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}epoch", self.prefix)
    }

    fn epoch(&self) -> String {
        self.epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs a script invocation built by `invocation` (given the epoch) for
    /// session `id` (if one), handling a lost marker and a cut connection
    /// as `mode` says.
    async fn run<'s, T: redis::FromRedisValue>(
        &'s self,
        mode: Mode,
        id: Option<SessionId>,
        invocation: impl Fn(&str) -> redis::ScriptInvocation<'s>,
    ) -> Result<T, StoreError> {
        let mut retried = false;
        loop {
            let epoch = self.epoch();
            let result = invocation(&epoch)
                .invoke_async(&mut self.redis.clone())
                .await;
            match result {
                Ok(value) => return Ok(value),
                Err(e) if is_lost(&e) => return Err(self.lost().await),
                // Another program wrote a key of the store's as another
                // type: that session only.
                Err(e) if is_wrong_type(&e) => {
                    return Err(match id {
                        Some(id) => StoreError::Unreadable {
                            id,
                            reason: format!("a key of the session holds another Redis type: {e}"),
                        },
                        None => backend(e),
                    });
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
        let zset = format!("{}x", self.prefix);
        let mut removed = 0usize;
        loop {
            let done: u64 = self
                .run(Mode::Write, None, |epoch| {
                    let mut call = self.scripts.cleanup.prepare_invoke();
                    call.key(self.epoch_key())
                        .key(&zset)
                        .arg(epoch)
                        .arg(now)
                        .arg(CLEANUP_BATCH)
                        .arg(&self.prefix);
                    call
                })
                .await?;
            removed += usize::try_from(done).unwrap_or(usize::MAX);
            if done < CLEANUP_BATCH {
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
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        loop {
            let created: i64 = inner
                .run(Mode::Write, Some(session.id), |epoch| {
                    let mut call = inner.scripts.create.prepare_invoke();
                    call.key(inner.epoch_key())
                        .key(inner.key("s", &session.id))
                        .key(format!("{}x", inner.prefix))
                        .key(format!("{}c:{}", inner.prefix, session.client_id))
                        .arg(epoch)
                        .arg(session.id.to_string())
                        .arg(&*session.client_id)
                        .arg(&*session.transport)
                        .arg(now)
                        .arg(ttl)
                        .arg(session.data.as_json())
                        .arg(limit)
                        .arg(session.expires_at())
                        .arg(ttl.saturating_add(SLACK_MS));
                    call
                })
                .await?;
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
        inner.events.emit(|name| Event::Created { name });
        Ok(Arc::new(session))
    }

    /// A pipeline, not a script: the marker and the hash in one round trip,
    /// without the cost of running Lua (15 µs a call on the server here,
    /// against under 1 µs for the two reads).
    async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let inner = &*self.inner;
        let now = inner.now();
        let key = inner.key("s", id);
        let mut retried = false;
        let (marker, fields) = loop {
            let read: Result<(Option<String>, Vec<Option<String>>), RedisError> = redis::pipe()
                .get(inner.epoch_key())
                .cmd("HMGET")
                .arg(&key)
                .arg(&["c", "t", "ca", "ua", "la", "ttl", "v", "d", "e"])
                .query_async(&mut inner.redis.clone())
                .await;
            match read {
                Ok(read) => break read,
                Err(e) if is_cut(&e) && !retried => retried = true,
                Err(e) if is_wrong_type(&e) => {
                    return Err(StoreError::Unreadable {
                        id: *id,
                        reason: format!("a key of the session holds another Redis type: {e}"),
                    });
                }
                Err(e) => return Err(backend(e)),
            }
        };
        if marker.as_deref() != Some(inner.epoch().as_str()) {
            return Err(inner.lost().await);
        }
        if fields.first().is_none_or(Option::is_none) {
            return Ok(None);
        }
        if millis(*id, "e", fields.get(8).and_then(Option::as_ref))? <= now {
            return Ok(None);
        }
        decode(*id, &fields).map(|s| Some(Arc::new(s)))
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
        let ttl_arg = ttl.map_or_else(String::new, |t| t.as_millis().to_string());
        let reply: Vec<String> = inner
            .run(Mode::Write, Some(*id), |epoch| {
                let mut call = inner.scripts.update.prepare_invoke();
                call.key(inner.epoch_key())
                    .key(inner.key("s", id))
                    .key(format!("{}x", inner.prefix))
                    .key(inner.key("j", id))
                    .arg(epoch)
                    .arg(expected_version)
                    .arg(data.as_json())
                    .arg(now)
                    .arg(&ttl_arg)
                    .arg(id.to_string())
                    .arg(SLACK_MS)
                    .arg(format!("{}c:", inner.prefix));
                call
            })
            .await?;
        let at = |i: usize| reply.get(i).map(String::as_str).unwrap_or_default();
        match at(0) {
            "2" => {
                let version = millis(*id, "v", reply.get(1))?;
                Ok(Arc::new(Session {
                    id: *id,
                    client_id: at(2).into(),
                    transport: at(3).into(),
                    created_at: millis(*id, "ca", reply.get(4))?,
                    updated_at: now,
                    last_activity: now,
                    ttl: Duration::from_millis(millis(*id, "ttl", reply.get(5))?),
                    version,
                    data,
                }))
            }
            "1" => {
                inner.events.emit(|name| Event::Conflict { name });
                Err(StoreError::Conflict {
                    expected: expected_version,
                    actual: millis(*id, "v", reply.get(1))?,
                })
            }
            "3" => {
                inner.events.emit(|name| Event::Expired { name, count: 1 });
                Err(StoreError::NotFound)
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn touch(&self, id: &SessionId) -> Result<Arc<Session>, StoreError> {
        let inner = &*self.inner;
        let now = inner.now();
        let fields: Option<Vec<Option<String>>> = inner
            .run(Mode::Write, Some(*id), |epoch| {
                let mut call = inner.scripts.touch.prepare_invoke();
                call.key(inner.epoch_key())
                    .key(inner.key("s", id))
                    .key(format!("{}x", inner.prefix))
                    .key(inner.key("j", id))
                    .arg(epoch)
                    .arg(now)
                    .arg(id.to_string())
                    .arg(SLACK_MS)
                    .arg(format!("{}c:", inner.prefix));
                call
            })
            .await?;
        match fields {
            Some(f) if f.is_empty() => {
                inner.events.emit(|name| Event::Expired { name, count: 1 });
                Err(StoreError::NotFound)
            }
            Some(f) => decode(*id, &f).map(Arc::new),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let removed: i64 = inner
            .run(Mode::Write, Some(*id), |epoch| {
                let mut call = inner.scripts.delete.prepare_invoke();
                call.key(inner.epoch_key())
                    .key(inner.key("s", id))
                    .key(format!("{}x", inner.prefix))
                    .key(inner.key("j", id))
                    .arg(epoch)
                    .arg(id.to_string())
                    .arg(format!("{}c:", inner.prefix));
                call
            })
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
            .run(Mode::Read, None, |epoch| {
                let mut call = inner.scripts.len.prepare_invoke();
                call.key(inner.epoch_key())
                    .key(format!("{}x", inner.prefix))
                    .arg(epoch);
                call
            })
            .await?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    async fn by_client(&self, client_id: &str) -> Result<Vec<Arc<Session>>, StoreError> {
        let inner = &*self.inner;
        let now = inner.now();
        let reply: Vec<Value> = inner
            .run(Mode::Read, None, |epoch| {
                let mut call = inner.scripts.by_client.prepare_invoke();
                call.key(inner.epoch_key())
                    .key(format!("{}c:{client_id}", inner.prefix))
                    .arg(epoch)
                    .arg(now)
                    .arg(format!("{}s:", inner.prefix));
                call
            })
            .await?;
        let mut found = Vec::with_capacity(reply.len() / 2);
        for pair in reply.chunks_exact(2) {
            let unexpected = |e: redis::ParsingError| StoreError::Backend(Box::new(e));
            let id: String = redis::from_redis_value_ref(&pair[0]).map_err(unexpected)?;
            let fields: Vec<Option<String>> =
                redis::from_redis_value_ref(&pair[1]).map_err(unexpected)?;
            let id: SessionId = id.parse()?;
            found.push(Arc::new(decode(id, &fields)?));
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
        let reply: Vec<i64> = inner
            .run(Mode::Write, Some(*id), |epoch| {
                let mut call = inner.scripts.journal_append.prepare_invoke();
                call.key(inner.epoch_key())
                    .key(inner.key("s", id))
                    .key(inner.key("j", id))
                    .arg(epoch)
                    .arg(now)
                    .arg(inner.config.max_journal_records)
                    .arg(&record);
                call
            })
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
        if status == JournalStatus::Pending {
            return Err(StoreError::JournalTransition {
                seq,
                from: JournalStatus::Pending,
                to: status,
            });
        }
        let inner = &*self.inner;
        let now = inner.now();
        let reply: Vec<String> = inner
            .run(Mode::Write, Some(*id), |epoch| {
                let mut call = inner.scripts.journal_mark.prepare_invoke();
                call.key(inner.epoch_key())
                    .key(inner.key("s", id))
                    .key(inner.key("j", id))
                    .arg(epoch)
                    .arg(now)
                    .arg(seq)
                    .arg(status_code(status));
                call
            })
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
            .run(Mode::Read, Some(*id), |epoch| {
                let mut call = inner.scripts.journal.prepare_invoke();
                call.key(inner.epoch_key())
                    .key(inner.key("s", id))
                    .key(inner.key("j", id))
                    .arg(epoch)
                    .arg(now);
                call
            })
            .await?;
        let pairs = pairs.ok_or(StoreError::NotFound)?;
        decode_journal(*id, &pairs)
    }
}

impl RedisStore {
    /// Every key of the store's sessions (`{prefix}s:*`), by SCAN.
    async fn session_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut redis = self.inner.redis.clone();
        let pattern = format!("{}s:*", self.inner.prefix);
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await
                .map_err(backend)?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                return Ok(keys);
            }
        }
    }
}

impl SessionExport for RedisStore {
    /// Every live session and its journal; each session read consistently
    /// (one script), not all at one instant.
    async fn export(&self) -> Result<Vec<SessionDump>, StoreError> {
        let inner = &*self.inner;
        let prefix = format!("{}s:", inner.prefix);
        let mut dumps = Vec::new();
        for key in self.session_keys().await? {
            let Some(id) = key.strip_prefix(&prefix).and_then(|id| id.parse().ok()) else {
                continue;
            };
            let Some(session) = self.get(&id).await? else {
                continue;
            };
            let journal = match self.journal(&id).await {
                Ok(records) => records,
                Err(StoreError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let mut redis = inner.redis.clone();
            let last_seq: Option<u64> = redis::cmd("HGET")
                .arg(&key)
                .arg("js")
                .query_async(&mut redis)
                .await
                .map_err(backend)?;
            dumps.push(SessionDump {
                journal: Journal::from_parts(last_seq.unwrap_or(0), journal),
                session,
            });
        }
        dumps.sort_by_key(|d| (d.session.created_at, d.session.id));
        Ok(dumps)
    }

    /// Replaces the store's sessions with `dumps`: every key of the store
    /// deleted, then each session written with its journal. Not atomic
    /// across sessions; the backup is checked whole before anything
    /// changes.
    async fn import(&self, dumps: Vec<SessionDump>) -> Result<usize, StoreError> {
        let inner = &*self.inner;
        let dumps = backup::admit(dumps, &inner.config, inner.now())?;
        let mut redis = inner.redis.clone();
        let mut cursor = 0u64;
        let pattern = format!("{}*", inner.prefix);
        let epoch_key = inner.epoch_key();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await
                .map_err(backend)?;
            let keys: Vec<&String> = keys.iter().filter(|k| **k != epoch_key).collect();
            if !keys.is_empty() {
                let _: Value = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut redis)
                    .await
                    .map_err(backend)?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let now = inner.now();
        for dump in &dumps {
            let s = &dump.session;
            let key = inner.key("s", &s.id);
            let ttl = u64::try_from(s.ttl.as_millis()).unwrap_or(u64::MAX);
            let keep = s.expires_at().saturating_sub(now).saturating_add(SLACK_MS);
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hset_multiple(
                    &key,
                    &[
                        ("c", s.client_id.to_string()),
                        ("t", s.transport.to_string()),
                        ("ca", s.created_at.to_string()),
                        ("ua", s.updated_at.to_string()),
                        ("la", s.last_activity.to_string()),
                        ("ttl", ttl.to_string()),
                        ("v", s.version.to_string()),
                        ("e", s.expires_at().to_string()),
                        ("js", dump.journal.last_seq().to_string()),
                        ("d", s.data.as_json().to_owned()),
                    ],
                )
                .ignore()
                .pexpire(&key, i64::try_from(keep).unwrap_or(i64::MAX))
                .ignore()
                .zadd(
                    format!("{}x", inner.prefix),
                    s.id.to_string(),
                    s.expires_at(),
                )
                .ignore()
                .sadd(
                    format!("{}c:{}", inner.prefix, s.client_id),
                    s.id.to_string(),
                )
                .ignore();
            let journal_key = inner.key("j", &s.id);
            for record in dump.journal.records() {
                let stored = serde_json::to_string(&StoredRecord {
                    at: record.at,
                    entry: record.entry.clone(),
                })
                .map_err(|e| StoreError::Backend(Box::new(e)))?;
                pipe.hset(&journal_key, record.seq.to_string(), stored)
                    .ignore()
                    .hset(
                        &journal_key,
                        format!("{}:s", record.seq),
                        status_code(record.status),
                    )
                    .ignore();
            }
            if !dump.journal.records().is_empty() {
                pipe.pexpire(&journal_key, i64::try_from(keep).unwrap_or(i64::MAX))
                    .ignore();
            }
            let _: Value = pipe.query_async(&mut redis).await.map_err(backend)?;
        }
        Ok(dumps.len())
    }
}
