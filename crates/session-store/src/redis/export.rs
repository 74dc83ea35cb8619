//! Export and import of a [`RedisStore`]: by SCAN over the store's keys,
//! each session read consistently, not all at one instant.

use redis::Value;

use super::codec::{self, StoredRecord, status_code};
use super::{RedisStore, SLACK_MS, backend};
use crate::backup::{self, SessionDump};
use crate::error::StoreError;
use crate::journal::Journal;
use crate::store::{SessionExport, SessionJournal, SessionStore};

impl RedisStore {
    /// Every key matching `pattern`, by SCAN (1000 at a time).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut redis = self.inner.redis.clone();
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
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

    /// Every key of the store's sessions (`{prefix}s:*`).
    async fn session_keys(&self) -> Result<Vec<String>, StoreError> {
        self.scan(&format!("{}s:*", self.inner.prefix)).await
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
                .arg(inner.key("j", &id))
                .arg("n")
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
        let mut keys = self.scan(&format!("{}*", inner.prefix)).await?;
        keys.retain(|k| *k != inner.epoch_key);
        for batch in keys.chunks(1000) {
            let _: Value = redis::cmd("DEL")
                .arg(batch)
                .query_async(&mut redis)
                .await
                .map_err(backend)?;
        }
        let now = inner.now();
        for dump in &dumps {
            let s = &dump.session;
            let key = inner.key("s", &s.id);
            let keep = s.expires_at().saturating_sub(now).saturating_add(SLACK_MS);
            let journal = dump.journal.last_seq() > 0 || !dump.journal.records().is_empty();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .set(&key, codec::encode(s, journal))
                .ignore()
                .pexpire(&key, i64::try_from(keep).unwrap_or(i64::MAX))
                .ignore()
                .zadd(&inner.index_key, s.id.to_string(), s.expires_at())
                .ignore()
                .sadd(
                    format!("{}{}", inner.client_prefix, s.client_id),
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
            if journal {
                pipe.hset(&journal_key, "n", dump.journal.last_seq())
                    .ignore()
                    .pexpire(&journal_key, i64::try_from(keep).unwrap_or(i64::MAX))
                    .ignore();
            }
            let _: Value = pipe.query_async(&mut redis).await.map_err(backend)?;
        }
        Ok(dumps.len())
    }
}
