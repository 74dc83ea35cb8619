//! Any keel store as a [`tower_sessions_core::SessionStore`], so an axum
//! application adopts a keel backend by changing the store it hands to
//! `SessionManagerLayer::new`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{Error, ExpiredDeletion, Result};

use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::observer::{Event, Events, Observer};
use crate::session::{NewSession, Session};
use crate::store::{ExpiredCleanup, SessionStore};

/// How often `save` rereads and retries when concurrent requests of one
/// session keep changing it (tower-sessions has no versions: last writer
/// wins, but never by overwriting blindly).
const SAVE_ATTEMPTS: usize = 16;

/// Kept past the record's expiry date by the keel store's TTL, so a store
/// whose clock is coarse or a little behind never frees a session early;
/// `load` goes by the exact date.
const EXPIRY_SLACK: Duration = Duration::from_secs(1);

/// What `save` does with a session the store no longer holds (a concurrent
/// request logged out, or the cookie names an unknown or expired id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaveMissing {
    /// The write is dropped and the request succeeds: the deletion stands
    /// (a logout is never undone, and a client never gets a session under
    /// an id it chose). Observers hear [`Event::SaveDropped`].
    #[default]
    Drop,
    /// The save fails, which tower-sessions turns into HTTP 500.
    Fail,
}

/// A keel [`SessionStore`] for tower-sessions.
///
/// The keel store picks the ids (128 bits from the OS CSPRNG, checked
/// against collisions) and frees expired sessions itself. Each session's
/// keel data is `{"data": <tower-sessions' map>, "expiry_ns": <the
/// record's expiry date, Unix nanoseconds>}`: `load` hands back exactly
/// the date `save` was given and treats the session as gone from that
/// instant, while the keel TTL runs a second past it. Sessions are filed
/// under the client id `"tower-sessions"` (change it with
/// [`with_client_id`](Self::with_client_id)) and transport `"http"`. A save
/// of a session the store no longer holds follows [`SaveMissing`].
///
/// ```
/// use keel_session_store::{MemoryStore, StoreConfig, TowerSessions};
/// use tower_sessions::SessionManagerLayer;
///
/// let store = TowerSessions::new(MemoryStore::new(StoreConfig::default())?);
/// let layer = SessionManagerLayer::new(store);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TowerSessions<S> {
    store: S,
    client_id: Arc<str>,
    save_missing: SaveMissing,
    events: Events,
}

impl<S: fmt::Debug> fmt::Debug for TowerSessions<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerSessions")
            .field("store", &self.store)
            .field("client_id", &self.client_id)
            .field("save_missing", &self.save_missing)
            .finish_non_exhaustive()
    }
}

impl<S> TowerSessions<S> {
    /// Wraps `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            client_id: Arc::from("tower-sessions"),
            save_missing: SaveMissing::default(),
            events: Events::default(),
        }
    }

    /// Files the sessions under `client_id`.
    #[must_use]
    pub fn with_client_id(mut self, client_id: impl Into<Arc<str>>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// What a save of a session the store no longer holds does.
    #[must_use]
    pub fn with_save_missing(mut self, policy: SaveMissing) -> Self {
        self.save_missing = policy;
        self
    }

    /// Reports the adapter's own events ([`Event::SaveDropped`]) to
    /// `observer`, under `name`.
    #[must_use]
    pub fn with_observer(mut self, name: impl Into<Arc<str>>, observer: impl Observer) -> Self {
        self.events = Events::new(name.into(), Some(Arc::new(observer)));
        self
    }

    /// The keel store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

fn backend(e: StoreError) -> Error {
    Error::Backend(e.to_string())
}

fn keel_id(id: &Id) -> SessionId {
    SessionId::from_bytes(id.0.to_be_bytes())
}

/// The keel data of a record: its map and exact expiry date.
#[derive(Serialize)]
struct Stored<'a> {
    data: &'a HashMap<String, serde_json::Value>,
    expiry_ns: i128,
}

/// [`Stored`], read back.
#[derive(Deserialize)]
struct Loaded {
    data: HashMap<String, serde_json::Value>,
    expiry_ns: i128,
}

fn to_keel(record: &Record) -> Result<Data> {
    let stored = Stored {
        data: &record.data,
        expiry_ns: record.expiry_date.unix_timestamp_nanos(),
    };
    Data::from_serialize(&stored).map_err(|e| Error::Encode(e.to_string()))
}

/// The keel TTL for a record expiring at `expiry`: the time left, rounded
/// up to whole milliseconds, plus [`EXPIRY_SLACK`].
fn ttl_until(expiry: OffsetDateTime) -> Duration {
    let left = Duration::try_from(expiry - OffsetDateTime::now_utc()).unwrap_or_default();
    let millis = left.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX)).saturating_add(EXPIRY_SLACK)
}

/// The record of a keel session, or `None` once its expiry date is past.
fn to_record(session: &Session) -> Result<Option<Record>> {
    let loaded: Loaded = session.data.deserialize().map_err(|e| {
        Error::Decode(format!(
            "session {:?} was not written by TowerSessions: {e}",
            session.id
        ))
    })?;
    let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(loaded.expiry_ns)
        .map_err(|e| Error::Decode(format!("expiry out of range: {e}")))?;
    if expiry_date <= OffsetDateTime::now_utc() {
        return Ok(None);
    }
    Ok(Some(Record {
        id: Id(i128::from_be_bytes(*session.id.as_bytes())),
        data: loaded.data,
        expiry_date,
    }))
}

impl<S> TowerSessions<S> {
    /// A save found no session: [`SaveMissing`] decides.
    fn missing(&self) -> Result<()> {
        match self.save_missing {
            SaveMissing::Drop => {
                self.events.emit(|name| Event::SaveDropped { name });
                Ok(())
            }
            SaveMissing::Fail => Err(Error::Backend(
                "the session expired or was deleted before this save".into(),
            )),
        }
    }
}

#[async_trait]
impl<S> tower_sessions_core::SessionStore for TowerSessions<S>
where
    S: SessionStore + fmt::Debug + Clone,
{
    async fn create(&self, record: &mut Record) -> Result<()> {
        let new = NewSession::new(Arc::clone(&self.client_id), "http")
            .with_data(to_keel(record)?)
            .with_ttl(ttl_until(record.expiry_date));
        let session = self.store.create(new).await.map_err(backend)?;
        record.id = Id(i128::from_be_bytes(*session.id.as_bytes()));
        Ok(())
    }

    async fn save(&self, record: &Record) -> Result<()> {
        let id = keel_id(&record.id);
        let data = to_keel(record)?;
        for _ in 0..SAVE_ATTEMPTS {
            // Only the version is kept: a session nobody holds can be
            // updated in place.
            let version = match self.store.get(&id).await.map_err(backend)? {
                Some(session) => session.version,
                None => return self.missing(),
            };
            let ttl = ttl_until(record.expiry_date);
            match self
                .store
                .update_with_ttl(&id, version, data.clone(), Some(ttl))
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                // Deleted or expired between the read and the write.
                Err(StoreError::NotFound) => return self.missing(),
                Err(e) => return Err(backend(e)),
            }
        }
        Err(Error::Backend(format!(
            "the session kept changing under {SAVE_ATTEMPTS} save attempts"
        )))
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        match self.store.get(&keel_id(id)).await.map_err(backend)? {
            Some(session) => to_record(&session),
            None => Ok(None),
        }
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.store.delete(&keel_id(id)).await.map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl<S> ExpiredDeletion for TowerSessions<S>
where
    S: ExpiredCleanup + fmt::Debug + Clone,
{
    async fn delete_expired(&self) -> Result<()> {
        self.store.cleanup_expired().await.map_err(backend)?;
        Ok(())
    }
}
