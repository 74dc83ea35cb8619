//! The session record.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;

/// One session. Timestamps are milliseconds since the Unix epoch.
///
/// `Debug` prints neither the data nor the whole id: both may be secrets.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Session {
    /// The id (a bearer secret).
    pub id: SessionId,
    /// Who the session belongs to (shared by its versions: an update
    /// copies no strings).
    pub client_id: Arc<str>,
    /// How the client is connected (e.g. `"http"`, `"websocket"`).
    pub transport: Arc<str>,
    /// When it was created.
    pub created_at: u64,
    /// When its data last changed.
    pub updated_at: u64,
    /// When it was last used; it expires `ttl` after this.
    pub last_activity: u64,
    /// The data.
    pub data: Data,
    /// Idle time after which it expires.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Bumped by every update; updates name the version they change.
    pub version: u64,
}

impl Session {
    /// When it expires, in milliseconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        self.last_activity.saturating_add(ttl)
    }

    /// Whether it has expired at `now` (milliseconds since the epoch).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at() <= now
    }

    /// A fresh session (version 1) for `new`, created at `now`.
    pub(crate) fn create(new: NewSession, id: SessionId, now: u64, default_ttl: Duration) -> Self {
        Self {
            id,
            client_id: new.client_id,
            transport: new.transport,
            created_at: now,
            updated_at: now,
            last_activity: now,
            data: new.data,
            ttl: new.ttl.unwrap_or(default_ttl),
            version: 1,
        }
    }

    /// Gives this session `data`, if its version is `expected_version`: the
    /// compare-and-swap every backend applies under its own lock. Returns
    /// the data it replaced, for the caller to free outside that lock.
    pub(crate) fn update(
        &mut self,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<Data, StoreError> {
        if self.version != expected_version {
            return Err(StoreError::Conflict {
                expected: expected_version,
                actual: self.version,
            });
        }
        self.updated_at = now;
        self.last_activity = now;
        self.ttl = ttl.unwrap_or(self.ttl);
        self.version += 1;
        Ok(std::mem::replace(&mut self.data, data))
    }

    /// A copy of this session given `data`, as [`update`](Self::update)
    /// does in place; the data is not copied.
    pub(crate) fn updated(
        &self,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
        now: u64,
    ) -> Result<Self, StoreError> {
        let mut next = self.with_data(Data::new());
        next.update(expected_version, data, ttl, now)?;
        Ok(next)
    }

    /// A copy of this session holding `data` instead of its own (its
    /// data is not copied).
    pub(crate) fn with_data(&self, data: Data) -> Self {
        Self {
            id: self.id,
            client_id: Arc::clone(&self.client_id),
            transport: Arc::clone(&self.transport),
            data,
            ..*self
        }
    }

    /// This session marked active at `now` (its data and version unchanged).
    pub(crate) fn touched(&self, now: u64) -> Self {
        Self {
            last_activity: now,
            ..self.clone()
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("transport", &self.transport)
            .field("version", &self.version)
            .field("data_bytes", &self.data.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// What [`SessionStore::create`](crate::SessionStore::create) needs.
#[derive(Clone, Default, PartialEq)]
#[must_use]
pub struct NewSession {
    /// Who the session belongs to.
    pub client_id: Arc<str>,
    /// How the client is connected.
    pub transport: Arc<str>,
    /// Initial data.
    pub data: Data,
    /// Idle time after which it expires (the store's default when `None`).
    pub ttl: Option<Duration>,
}

impl NewSession {
    /// A session for `client_id` over `transport`, empty, with the default TTL.
    pub fn new(client_id: impl Into<Arc<str>>, transport: impl Into<Arc<str>>) -> Self {
        Self {
            client_id: client_id.into(),
            transport: transport.into(),
            ..Self::default()
        }
    }

    /// With this initial data.
    pub fn with_data(mut self, data: Data) -> Self {
        self.data = data;
        self
    }

    /// With this TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("client_id", &self.client_id)
            .field("transport", &self.transport)
            .field("data_bytes", &self.data.len())
            .field("ttl", &self.ttl)
            .finish()
    }
}
