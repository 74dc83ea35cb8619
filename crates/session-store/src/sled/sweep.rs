//! Expiry cleanup: a range scan of the expiry index.

use super::keys::{EXPIRY, expiry_key};
use super::write::{erase, file};
use super::{Inner, load, lock_stripe};
use crate::error::StoreError;
use crate::id::SessionId;
use crate::observer::Event;

/// Removes every session expired at `now`: a range scan of the expiry
/// index, then each candidate rechecked under its lock (a touch may have
/// moved it on since).
pub(super) fn sweep(inner: &Inner, now: u64) -> Result<usize, StoreError> {
    let mut due = Vec::new();
    let mut end = vec![EXPIRY];
    end.extend_from_slice(&now.saturating_add(1).to_be_bytes());
    inner
        .engine
        .scan(&[EXPIRY][..]..&end[..], &mut |k, _| {
            let filed = k.get(1..9).and_then(|b| <[u8; 8]>::try_from(b).ok());
            let id = k.get(9..25).and_then(|b| <[u8; 16]>::try_from(b).ok());
            if let (Some(filed), Some(id)) = (filed, id) {
                due.push((u64::from_be_bytes(filed), SessionId::from_bytes(id)));
            }
            true
        })
        .map_err(StoreError::Backend)?;
    let engine = &*inner.engine;
    let mut removed = 0;
    for (filed, id) in due {
        let _stripe = lock_stripe(inner, &id);
        match load(inner, &id)? {
            Some(stored) if stored.filed == filed => {
                if stored.head.is_expired(now) {
                    erase(engine, &stored)?;
                    inner.count.remove(1);
                    removed += 1;
                } else {
                    // Alive: touched or updated since it was filed.
                    let to = stored.head.expires_at();
                    file(engine, to, &id, stored.refiled(to))?;
                    engine
                        .remove(&expiry_key(filed, &id))
                        .map_err(StoreError::Backend)?;
                }
            }
            // Left by a crash between two writes: points at nothing, or
            // at a session filed elsewhere.
            _ => engine
                .remove(&expiry_key(filed, &id))
                .map_err(StoreError::Backend)?,
        }
    }
    if removed > 0 {
        inner.events.emit(|name| Event::Expired {
            name,
            count: removed,
        });
    }
    if let Ok(bytes) = inner.engine.size_on_disk() {
        inner.events.emit(|name| Event::SizeOnDisk { name, bytes });
    }
    Ok(removed)
}
