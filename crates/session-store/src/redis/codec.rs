//! Sessions and journal records as the Redis backend stores them (a
//! session one string, a journal one hash), read back with an error that
//! names the session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::RedisError;
use serde::{Deserialize, Serialize};

use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{JournalEntry, JournalRecord, JournalStatus};
use crate::session::Session;

/// Another program wrote a key of session `id` as another Redis type.
pub(super) fn wrong_type(id: SessionId, e: &RedisError) -> StoreError {
    StoreError::Unreadable {
        id,
        reason: format!("a key of the session holds another Redis type: {e}"),
    }
}

/// A session's key holds a string this store did not write (a script
/// found its layout mark missing).
pub(super) fn foreign(id: SessionId) -> StoreError {
    StoreError::Unreadable {
        id,
        reason: "its value was not written by this store (its layout mark is missing)".into(),
    }
}

/// A millisecond count or version read back from Redis.
pub(super) fn millis(id: SessionId, name: &str, value: Option<&String>) -> Result<u64, StoreError> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Unreadable {
            id,
            reason: format!("field `{name}` is {value:?}, not a count of milliseconds"),
        })
}

/// The fixed-width block that ends every session value: created (20
/// digits), the lengths of the client id and transport (10 digits each),
/// then what writes change: version, updated, last activity, TTL (20
/// digits each) and the journal flag; last the layout mark. The scripts
/// read and rewrite it in place (`GETRANGE`, `SETRANGE`), so a session's
/// data never passes through Lua; an update keeps the bytes up to the
/// version as they are and writes the rest.
pub(super) const FIXED: usize = 20 + 2 * 10 + 4 * 20 + 1 + MARK.len();

/// The last bytes of every session value (and the layout's version).
pub(super) const MARK: &str = "K1";

/// The number in `width` digits at `at` of a fixed block, if it is one.
pub(super) fn fixed_number(fixed: &[u8], at: usize, width: usize) -> Option<u64> {
    std::str::from_utf8(fixed.get(at..at + width)?)
        .ok()?
        .parse()
        .ok()
}

/// A session as one Redis string: its data, client id, transport, then
/// the fixed block ([`FIXED`]): a read is one `GET`.
pub(super) fn encode(session: &Session, journal: bool) -> Vec<u8> {
    let data = session.data.as_json();
    let mut value =
        Vec::with_capacity(data.len() + session.client_id.len() + session.transport.len() + FIXED);
    value.extend_from_slice(data.as_bytes());
    value.extend_from_slice(session.client_id.as_bytes());
    value.extend_from_slice(session.transport.as_bytes());
    let ttl = u64::try_from(session.ttl.as_millis()).unwrap_or(u64::MAX);
    let fixed = format!(
        "{:020}{:010}{:010}{:020}{:020}{:020}{:020}{}{MARK}",
        session.created_at,
        session.client_id.len(),
        session.transport.len(),
        session.version,
        session.updated_at,
        session.last_activity,
        ttl,
        u8::from(journal),
    );
    value.extend_from_slice(fixed.as_bytes());
    value
}

/// Splits a value written by [`encode`] (or a tail of one holding at
/// least the client id, transport and fixed block) into the session
/// without its data (empty, which allocates nothing) and the length of
/// what comes before the client id (the data).
pub(super) fn decode_meta(id: SessionId, value: &[u8]) -> Result<(Session, usize), StoreError> {
    let unreadable = |reason: String| StoreError::Unreadable { id, reason };
    let Some(fixed_at) = value.len().checked_sub(FIXED) else {
        return Err(unreadable(format!(
            "a value of {} bytes, shorter than a session's metadata",
            value.len()
        )));
    };
    let fixed = &value[fixed_at..];
    if !fixed.ends_with(MARK.as_bytes()) {
        return Err(foreign(id));
    }
    let number = |at: usize, width: usize, name: &str| {
        fixed_number(fixed, at, width)
            .ok_or_else(|| unreadable(format!("field `{name}` is not a number")))
    };
    let length = |at: usize, name: &str| {
        number(at, 10, name).and_then(|n| usize::try_from(n).map_err(|e| unreadable(e.to_string())))
    };
    let (client_len, transport_len) = (
        length(20, "client id length")?,
        length(30, "transport length")?,
    );
    let data_len = client_len
        .checked_add(transport_len)
        .and_then(|names| fixed_at.checked_sub(names))
        .ok_or_else(|| unreadable("the client id and transport overrun the value".into()))?;
    let text = |from: usize, len: usize, name: &str| {
        std::str::from_utf8(&value[from..from + len])
            .map(Arc::<str>::from)
            .map_err(|_| unreadable(format!("the {name} is not UTF-8")))
    };
    let session = Session {
        id,
        data: Data::new(),
        created_at: number(0, 20, "created")?,
        version: number(40, 20, "version")?,
        updated_at: number(60, 20, "updated")?,
        last_activity: number(80, 20, "last activity")?,
        ttl: Duration::from_millis(number(100, 20, "ttl")?),
        client_id: text(data_len, client_len, "client id")?,
        transport: text(data_len + client_len, transport_len, "transport")?,
    };
    Ok((session, data_len))
}

/// A session from its whole value, or `None` when it expired by `now`.
pub(super) fn decode(
    id: SessionId,
    mut value: Vec<u8>,
    now: u64,
) -> Result<Option<Session>, StoreError> {
    let (mut session, data_len) = decode_meta(id, &value)?;
    if session.is_expired(now) {
        return Ok(None);
    }
    value.truncate(data_len);
    let unreadable = |reason: String| StoreError::Unreadable { id, reason };
    let text = String::from_utf8(value).map_err(|_| unreadable("data: not UTF-8".into()))?;
    session.data = Data::from_json(text).map_err(|e| unreadable(format!("data: {e}")))?;
    Ok(Some(session))
}

/// What the journal keeps of a record besides its sequence and status.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredRecord {
    pub(super) at: u64,
    #[serde(flatten)]
    pub(super) entry: JournalEntry,
}

pub(super) fn status_code(status: JournalStatus) -> &'static str {
    match status {
        JournalStatus::Pending => "0",
        JournalStatus::Committed => "1",
        JournalStatus::Aborted => "2",
    }
}

pub(super) fn status_of(id: SessionId, code: &str) -> Result<JournalStatus, StoreError> {
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
pub(super) fn decode_journal(
    id: SessionId,
    pairs: &[String],
) -> Result<Vec<JournalRecord>, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::NewSession;

    fn session() -> Session {
        let new = NewSession::new("client-7", "http")
            .with_data(Data::from_json(r#"{"k":"v"}"#).unwrap_or_default());
        let mut s = Session::create(
            new,
            SessionId::from_bytes([7; 16]),
            1_000,
            Duration::from_secs(60),
        );
        s.version = 12;
        s
    }

    #[test]
    fn a_session_round_trips() {
        let s = session();
        let value = encode(&s, true);
        assert_eq!(
            value.len(),
            s.data.as_json().len() + "client-7http".len() + FIXED
        );
        let back = decode(s.id, value, 1_000).ok().flatten();
        assert_eq!(back.as_ref(), Some(&s));
        assert!(
            matches!(decode(s.id, encode(&s, false), 61_000), Ok(None)),
            "expired"
        );
    }

    #[test]
    fn a_damaged_value_is_unreadable_and_says_why() {
        let s = session();
        let reason = |value: Vec<u8>| match decode(s.id, value, 0) {
            Err(StoreError::Unreadable { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(b"short".to_vec()).contains("shorter"));
        let mut unmarked = encode(&s, false);
        unmarked.pop();
        unmarked.push(b'2');
        assert!(reason(unmarked).contains("layout mark"));
        let mut overrun = encode(&s, false);
        let at = overrun.len() - FIXED + 20;
        overrun[at..at + 10].copy_from_slice(b"9999999999");
        assert!(reason(overrun).contains("overrun"));
        let mut letters = encode(&s, false);
        let at = letters.len() - FIXED + 40;
        letters[at] = b'x';
        assert!(reason(letters).contains("version"));
        let mut array = encode(&s, false);
        array.splice(..s.data.as_json().len(), *b"[1]");
        assert!(reason(array).contains("data"));
    }
}
