//! The key layout: one byte names the key space (and its tree), the rest
//! orders keys within it.

use crate::id::SessionId;

pub(super) const SESSION: u8 = b's';
pub(super) const EXPIRY: u8 = b'x';
pub(super) const JOURNAL: u8 = b'j';
pub(super) const CLIENT: u8 = b'c';

pub(super) fn key(space: u8, id: &SessionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(space);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `c` + client id length (u32 BE) + client id: every session of one
/// client under one prefix.
pub(super) fn client_prefix(client_id: &str) -> Vec<u8> {
    let len = u32::try_from(client_id.len()).unwrap_or(u32::MAX);
    let mut k = Vec::with_capacity(5 + client_id.len() + 16);
    k.push(CLIENT);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(client_id.as_bytes());
    k
}

pub(super) fn client_key(client_id: &str, id: &SessionId) -> Vec<u8> {
    let mut k = client_prefix(client_id);
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn expiry_key(filed: u64, id: &SessionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(EXPIRY);
    k.extend_from_slice(&filed.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}
