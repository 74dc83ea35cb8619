//! Sessions and journal records as the Redis backend stores them: hash
//! fields of text, read back with an error that names the session.

use std::collections::HashMap;
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

/// A millisecond field of a session hash.
pub(super) fn millis(id: SessionId, name: &str, value: Option<&String>) -> Result<u64, StoreError> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Unreadable {
            id,
            reason: format!("field `{name}` is {value:?}, not a count of milliseconds"),
        })
}

/// The hash fields a session is read from, in [`decode`]'s order.
pub(super) const FIELDS: [&str; 9] = ["c", "t", "ca", "ua", "la", "ttl", "v", "d", "e"];

/// A session from the fields [`FIELDS`].
pub(super) fn decode(id: SessionId, f: &[Option<String>]) -> Result<Session, StoreError> {
    let field = |i: usize| f.get(i).and_then(Option::as_ref);
    let text = |i: usize, name: &str| {
        field(i).cloned().ok_or_else(|| StoreError::Unreadable {
            id,
            reason: format!("field `{name}` is missing"),
        })
    };
    let data = Data::from_json(text(7, "d")?).map_err(|e| StoreError::Unreadable {
        id,
        reason: format!("data: {e}"),
    })?;
    Ok(Session {
        id,
        client_id: text(0, "c")?.into(),
        transport: text(1, "t")?.into(),
        created_at: millis(id, "ca", field(2))?,
        updated_at: millis(id, "ua", field(3))?,
        last_activity: millis(id, "la", field(4))?,
        ttl: Duration::from_millis(millis(id, "ttl", field(5))?),
        version: millis(id, "v", field(6))?,
        data,
    })
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
