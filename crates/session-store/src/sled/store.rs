//! [`SessionStore`] over the sled backend.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::SledStore;
use super::keys::{JOURNAL, SESSION, client_key, client_prefix, expiry_key, key};
use super::kv::Batch;
use super::record::{Stored, to_json};
use super::sweep::sweep;
use super::write::{erase, insert};
use crate::backup::{self, SessionDump};
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{JournalEntry, JournalRecord, JournalStatus};
use crate::observer::Event;
use crate::session::{NewSession, Session};
use crate::store::{ExpiredCleanup, SessionExport, SessionJournal, SessionStore};

impl SessionStore for SledStore {
    async fn create(&self, new: NewSession) -> Result<Arc<Session>, StoreError> {
        self.inner.config.check_size(&new.data)?;
        self.inner
            .count
            .reserve(self.inner.config.max_sessions, || {
                sweep(&self.inner, self.now()).unwrap_or(0)
            })?;
        let now = self.now();
        let mut session = Session::create(
            new,
            SessionId::from_bytes([0; 16]),
            now,
            self.inner.config.default_ttl,
        );
        let stored = loop {
            session.id = match SessionId::random() {
                Ok(id) => id,
                Err(e) => break Err(e),
            };
            let _stripe = self.lock(&session.id);
            match self.inner.engine.contains(&key(SESSION, &session.id)) {
                Ok(false) => break insert(&*self.inner.engine, &session),
                Ok(true) => {}
                Err(e) => break Err(StoreError::Backend(e)),
            }
        };
        stored.inspect_err(|_| self.inner.count.remove(1))?;
        self.acknowledge().await?;
        self.inner.events.emit(|name| Event::Created { name });
        Ok(Arc::new(session))
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let now = self.now();
        match self.load(id)? {
            Some(stored) if !stored.head.is_expired(now) => Ok(Some(Arc::new(stored.session()?))),
            _ => Ok(None),
        }
    }

    async fn update_with_ttl(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
    ) -> Result<Arc<Session>, StoreError> {
        self.inner.config.check_size(&data)?;
        self.modify(id, false, |current, now| {
            current.updated(expected_version, data, ttl, now)
        })
        .await
    }

    async fn touch(&self, id: &SessionId) -> Result<Arc<Session>, StoreError> {
        self.modify(id, true, |current, now| Ok(current.touched(now)))
            .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        {
            let _stripe = self.lock(id);
            let Some(stored) = self.load(id)? else {
                return Ok(false);
            };
            erase(&*self.inner.engine, &stored)?;
            self.inner.count.remove(1);
        }
        self.acknowledge().await?;
        self.inner.events.emit(|name| Event::Deleted { name });
        Ok(true)
    }

    async fn len(&self) -> Result<usize, StoreError> {
        Ok(self.inner.count.get())
    }

    async fn by_client(&self, client_id: &str) -> Result<Vec<Arc<Session>>, StoreError> {
        let now = self.now();
        let prefix = client_prefix(client_id);
        let mut end = prefix.clone();
        end.extend_from_slice(&[u8::MAX; 17]);
        let mut ids = Vec::new();
        self.inner
            .engine
            .scan(&prefix[..]..&end[..], &mut |k, _| {
                if let Some(id) = k
                    .get(prefix.len()..)
                    .and_then(|b| <[u8; 16]>::try_from(b).ok())
                {
                    ids.push(SessionId::from_bytes(id));
                }
                true
            })
            .map_err(StoreError::Backend)?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            match self.load(&id)? {
                Some(stored) if !stored.head.is_expired(now) => {
                    found.push(Arc::new(stored.session()?));
                }
                Some(_) => {}
                None => {
                    // Left by a crash between two writes of a create or a
                    // delete: clear it, under the session's lock.
                    let _stripe = self.lock(&id);
                    if self.load(&id)?.is_none() {
                        self.inner
                            .engine
                            .remove(&client_key(client_id, &id))
                            .map_err(StoreError::Backend)?;
                    }
                }
            }
        }
        found.sort_by_key(|s| (s.created_at, s.id));
        Ok(found)
    }
}

impl ExpiredCleanup for SledStore {
    async fn cleanup_expired(&self) -> Result<usize, StoreError> {
        sweep(&self.inner, self.now())
    }
}

impl SessionJournal for SledStore {
    async fn journal_append(&self, id: &SessionId, entry: JournalEntry) -> Result<u64, StoreError> {
        let limit = self.inner.config.max_journal_records;
        self.journaled(id, |journal, now| journal.append(entry, now, limit))
            .await
    }

    async fn journal_mark(
        &self,
        id: &SessionId,
        seq: u64,
        status: JournalStatus,
    ) -> Result<(), StoreError> {
        self.journaled(id, |journal, _| journal.mark(seq, status))
            .await
    }

    async fn journal(&self, id: &SessionId) -> Result<Vec<JournalRecord>, StoreError> {
        if self.get(id).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        Ok(self.load_journal(id)?.records())
    }
}

impl SessionExport for SledStore {
    async fn export(&self) -> Result<Vec<SessionDump>, StoreError> {
        let now = self.now();
        let mut sessions = Vec::with_capacity(self.inner.count.get());
        self.scan_sessions(|s| {
            if !s.is_expired(now) {
                sessions.push(s);
            }
        })?;
        sessions
            .into_iter()
            .map(|session| {
                let journal = self.load_journal(&session.id)?;
                Ok(SessionDump {
                    session: Arc::new(session),
                    journal,
                })
            })
            .collect()
    }

    async fn import(&self, dumps: Vec<SessionDump>) -> Result<usize, StoreError> {
        let dumps = backup::admit(dumps, &self.inner.config, self.now())?;
        let count = dumps.len();
        {
            // Every stripe held, in order: no write interleaves the swap.
            let _stripes: Vec<_> = self
                .inner
                .stripes
                .iter()
                .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner))
                .collect();
            let mut batch = Batch::default();
            self.inner
                .engine
                .scan(&[0u8][..]..&[u8::MAX][..], &mut |k, _| {
                    batch.remove(k.to_vec());
                    true
                })
                .map_err(StoreError::Backend)?;
            // One atomic batch: a crash leaves the old contents or the new.
            for dump in &dumps {
                let (id, expires) = (&dump.session.id, dump.session.expires_at());
                batch.put(key(SESSION, id), Stored::encode(expires, &dump.session)?);
                batch.put(expiry_key(expires, id), Vec::new());
                batch.put(client_key(&dump.session.client_id, id), Vec::new());
                if !dump.journal.is_empty() {
                    batch.put(key(JOURNAL, id), to_json(&dump.journal)?);
                }
            }
            self.inner
                .engine
                .apply(batch)
                .map_err(StoreError::Backend)?;
            self.inner.count.set(count);
        }
        self.acknowledge().await?;
        Ok(count)
    }
}
