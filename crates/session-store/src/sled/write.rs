//! The crash-ordered write protocol.

use super::keys::{JOURNAL, SESSION, client_key, expiry_key, key};
use super::kv::Engine;
use super::record::Stored;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::session::Session;

// Writes go one key at a time (sled's batches and transactions take a
// lock that stops every other writer), in an order that leaves, after a
// crash between any two, at worst an index entry pointing at nothing or
// at a session filed elsewhere; the sweep (expiry entries) and
// `by_client` (client entries) remove those when they meet them.

/// Writes a new session: its client and expiry index entries, then the
/// record.
pub(super) fn insert(engine: &dyn Engine, session: &Session) -> Result<(), StoreError> {
    let expires = session.expires_at();
    engine
        .put(&client_key(&session.client_id, &session.id), Vec::new())
        .map_err(StoreError::Backend)?;
    file(
        engine,
        expires,
        &session.id,
        Stored::encode(expires, session)?,
    )
}

pub(super) fn file(
    engine: &dyn Engine,
    filed: u64,
    id: &SessionId,
    record: Vec<u8>,
) -> Result<(), StoreError> {
    engine
        .put(&expiry_key(filed, id), Vec::new())
        .and_then(|()| engine.put(&key(SESSION, id), record))
        .map_err(StoreError::Backend)
}

/// Replaces the session filed at `filed` by `next`: the index entry moves
/// only if `next` expires before that (new entry, record, old entry).
pub(super) fn replace(engine: &dyn Engine, filed: u64, next: &Session) -> Result<(), StoreError> {
    let expires = next.expires_at();
    if expires < filed {
        file(engine, expires, &next.id, Stored::encode(expires, next)?)?;
        return engine
            .remove(&expiry_key(filed, &next.id))
            .map_err(StoreError::Backend);
    }
    engine
        .put(&key(SESSION, &next.id), Stored::encode(filed, next)?)
        .map_err(StoreError::Backend)
}

/// Removes everything of a session: journal, record, then index entries.
pub(super) fn erase(engine: &dyn Engine, stored: &Stored) -> Result<(), StoreError> {
    let id = &stored.head.id;
    engine
        .remove(&key(JOURNAL, id))
        .and_then(|()| engine.remove(&key(SESSION, id)))
        .and_then(|()| engine.remove(&expiry_key(stored.filed, id)))
        .and_then(|()| engine.remove(&client_key(&stored.head.client_id, id)))
        .map_err(StoreError::Backend)
}
