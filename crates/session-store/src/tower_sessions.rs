//! Any keel store as a [`tower_sessions_core::SessionStore`], so an axum
//! application adopts a keel backend by changing the store it hands to
//! `SessionManagerLayer::new`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{Error, ExpiredDeletion, Result};

use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::session::{NewSession, Session};
use crate::store::{ExpiredCleanup, SessionStore};

/// How often `save` rereads and retries when concurrent requests of one
/// session keep changing it (tower-sessions has no versions: last writer
/// wins, but never by overwriting blindly).
const SAVE_ATTEMPTS: usize = 16;

/// A keel [`SessionStore`] for tower-sessions.
///
/// The keel store picks the ids (128 bits from the OS CSPRNG, checked
/// against collisions), keeps each session until the record's expiry date,
/// and frees expired ones itself. Sessions are filed under the client id
/// `"tower-sessions"` (change it with
/// [`with_client_id`](Self::with_client_id)) and transport `"http"`.
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
}

impl<S: fmt::Debug> fmt::Debug for TowerSessions<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerSessions")
            .field("store", &self.store)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl<S> TowerSessions<S> {
    /// Wraps `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            client_id: Arc::from("tower-sessions"),
        }
    }

    /// Files the sessions under `client_id`.
    #[must_use]
    pub fn with_client_id(mut self, client_id: impl Into<Arc<str>>) -> Self {
        self.client_id = client_id.into();
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

/// Time left until `expiry` (at least 1 ms: the store refuses none).
fn ttl_until(expiry: OffsetDateTime) -> Duration {
    let left = expiry - OffsetDateTime::now_utc();
    Duration::try_from(left)
        .unwrap_or_default()
        .max(Duration::from_millis(1))
}

fn to_keel(data: &std::collections::HashMap<String, serde_json::Value>) -> Result<Data> {
    Data::from_serialize(data).map_err(|e| Error::Encode(e.to_string()))
}

fn to_record(session: &Session) -> Result<Record> {
    let expires_ns = i128::from(session.expires_at()) * 1_000_000;
    let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(expires_ns)
        .map_err(|e| Error::Decode(format!("expiry out of range: {e}")))?;
    Ok(Record {
        id: Id(i128::from_be_bytes(*session.id.as_bytes())),
        data: session
            .data
            .deserialize()
            .map_err(|e| Error::Decode(e.to_string()))?,
        expiry_date,
    })
}

#[async_trait]
impl<S> tower_sessions_core::SessionStore for TowerSessions<S>
where
    S: SessionStore + fmt::Debug + Clone,
{
    async fn create(&self, record: &mut Record) -> Result<()> {
        let new = NewSession::new(Arc::clone(&self.client_id), "http")
            .with_data(to_keel(&record.data)?)
            .with_ttl(ttl_until(record.expiry_date));
        let session = self.store.create(new).await.map_err(backend)?;
        record.id = Id(i128::from_be_bytes(*session.id.as_bytes()));
        Ok(())
    }

    async fn save(&self, record: &Record) -> Result<()> {
        let id = keel_id(&record.id);
        let data = to_keel(&record.data)?;
        for _ in 0..SAVE_ATTEMPTS {
            // Only the version is kept: a session nobody holds can be
            // updated in place.
            let version = self
                .store
                .get(&id)
                .await
                .map_err(backend)?
                .ok_or_else(|| Error::Backend("the session expired or was deleted".into()))?
                .version;
            let ttl = ttl_until(record.expiry_date);
            match self
                .store
                .update_with_ttl(&id, version, data.clone(), Some(ttl))
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(backend(e)),
            }
        }
        Err(Error::Backend(format!(
            "the session kept changing under {SAVE_ATTEMPTS} save attempts"
        )))
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        match self.store.get(&keel_id(id)).await.map_err(backend)? {
            Some(session) => to_record(&session).map(Some),
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
