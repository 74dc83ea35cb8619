//! A session as the sled backend stores it:
//! `filed expiry u64 BE | head length u32 BE | head JSON | data JSON`.
//! The head (everything but the data) decodes on its own, so a
//! compare-and-swap update, an expiry check or a re-filing never parses
//! the data.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::session::Session;

/// The session without its data; ttl in milliseconds.
#[derive(Serialize)]
struct HeadRef<'a> {
    id: &'a SessionId,
    client_id: &'a str,
    transport: &'a str,
    created_at: u64,
    updated_at: u64,
    last_activity: u64,
    ttl_ms: u64,
    version: u64,
}

#[derive(Deserialize)]
struct Head {
    id: SessionId,
    client_id: Arc<str>,
    transport: Arc<str>,
    created_at: u64,
    updated_at: u64,
    last_activity: u64,
    ttl_ms: u64,
    version: u64,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("a stored session record does not decode: {what}").into())
}

/// A stored session whose head is decoded and whose data is not (yet).
pub(super) struct Stored {
    /// The expiry it is filed under in the index.
    pub(super) filed: u64,
    /// The session with empty data.
    pub(super) head: Session,
    bytes: Vec<u8>,
    data_at: usize,
}

impl Stored {
    pub(super) fn encode(filed: u64, session: &Session) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::with_capacity(2560);
        bytes.extend_from_slice(&filed.to_be_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let head = HeadRef {
            id: &session.id,
            client_id: &session.client_id,
            transport: &session.transport,
            created_at: session.created_at,
            updated_at: session.updated_at,
            last_activity: session.last_activity,
            ttl_ms: u64::try_from(session.ttl.as_millis()).unwrap_or(u64::MAX),
            version: session.version,
        };
        let json = |e: serde_json::Error| StoreError::Backend(Box::new(e));
        serde_json::to_writer(&mut bytes, &head).map_err(json)?;
        let head_len = u32::try_from(bytes.len() - 12).map_err(|_| corrupt("head too long"))?;
        bytes[8..12].copy_from_slice(&head_len.to_be_bytes());
        bytes.extend_from_slice(session.data.as_json().as_bytes());
        Ok(bytes)
    }

    pub(super) fn decode(bytes: Vec<u8>) -> Result<Self, StoreError> {
        let (filed, rest) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("truncated"))?;
        let (head_len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated"))?;
        let head_len = u32::from_be_bytes(*head_len) as usize;
        let head: Head =
            serde_json::from_slice(rest.get(..head_len).ok_or_else(|| corrupt("truncated"))?)
                .map_err(corrupt)?;
        Ok(Self {
            filed: u64::from_be_bytes(*filed),
            head: Session {
                id: head.id,
                client_id: head.client_id,
                transport: head.transport,
                created_at: head.created_at,
                updated_at: head.updated_at,
                last_activity: head.last_activity,
                data: Data::new(),
                ttl: Duration::from_millis(head.ttl_ms),
                version: head.version,
            },
            data_at: 12 + head_len,
            bytes,
        })
    }

    /// The whole session, data decoded.
    pub(super) fn session(self) -> Result<Session, StoreError> {
        let text = std::str::from_utf8(&self.bytes[self.data_at..]).map_err(corrupt)?;
        let data = Data::from_json(text).map_err(corrupt)?;
        Ok(Session { data, ..self.head })
    }

    /// The same record filed under another expiry (the data is copied as
    /// bytes, not decoded).
    pub(super) fn refiled(&self, filed: u64) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        bytes[..8].copy_from_slice(&filed.to_be_bytes());
        bytes
    }
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(Box::new(e)))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StoreError::Backend(format!("a stored {what} record does not decode: {e}").into())
    })
}
