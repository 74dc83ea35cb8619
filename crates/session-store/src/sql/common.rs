//! What the SQL backends share: time and id columns, row decoding, the
//! JSON text the engines print, and how a statement's failure is told.

use std::time::Duration;

#[cfg(feature = "mysql")]
use keel_pool_core::sqlx::mysql::MySqlRow;
#[cfg(feature = "postgres")]
use keel_pool_core::sqlx::postgres::PgRow;
use keel_pool_core::sqlx::{self, Row as _};

use super::schema::backend;
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{JournalEntry, JournalRecord, JournalStatus};
use crate::session::Session;

/// Expired rows deleted per statement by a cleanup, so one cleanup never
/// holds a long lock or a huge transaction.
pub(super) const CLEANUP_BATCH: i64 = 1_000;

/// The column reads decoding needs, for each driver's row type.
pub(super) trait Columns {
    fn bytes(&self, i: usize) -> Result<Vec<u8>, sqlx::Error>;
    fn int(&self, i: usize) -> Result<i64, sqlx::Error>;
    fn small(&self, i: usize) -> Result<i16, sqlx::Error>;
    fn text(&self, i: usize) -> Result<String, sqlx::Error>;
}

macro_rules! columns {
    ($row:ty) => {
        impl Columns for $row {
            fn bytes(&self, i: usize) -> Result<Vec<u8>, sqlx::Error> {
                self.try_get(i)
            }
            fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
                self.try_get(i)
            }
            fn small(&self, i: usize) -> Result<i16, sqlx::Error> {
                self.try_get(i)
            }
            fn text(&self, i: usize) -> Result<String, sqlx::Error> {
                self.try_get(i)
            }
        }
    };
}

#[cfg(feature = "postgres")]
columns!(PgRow);
#[cfg(feature = "mysql")]
columns!(MySqlRow);

/// Milliseconds as a BIGINT (times far past 2^63 ms saturate).
pub(super) fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// A session's data as stored: the engine's JSON text (JSONB and MySQL
/// print `{"a": 1, "b": [1, 2]}`) made compact again, then checked to be
/// a JSON object.
fn read_data(id: SessionId, text: &str) -> Result<Data, StoreError> {
    Data::from_json(compact(text)).map_err(|e| StoreError::Unreadable {
        id,
        reason: format!("data: {e}"),
    })
}

/// JSON text without the whitespace between its tokens; strings kept as
/// they are. One pass over the bytes: far cheaper than parsing into values
/// and printing them again (whitespace, quotes and backslashes are ASCII,
/// never part of a multi-byte UTF-8 character).
pub(super) fn compact(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in text.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !b.is_ascii_whitespace() {
            in_string = b == b'"';
            out.push(b);
        }
    }
    // Only ASCII bytes were dropped, so the rest is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A 16-byte id column.
pub(super) fn read_id(row: &impl Columns, column: usize) -> Result<SessionId, StoreError> {
    let bytes = row.bytes(column).map_err(backend)?;
    let len = bytes.len();
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| backend(format!("a session id of {len} bytes, not 16")))?;
    Ok(SessionId::from_bytes(bytes))
}

/// A millisecond column, which must not be negative.
pub(super) fn read_ms(row: &impl Columns, id: SessionId, column: usize) -> Result<u64, StoreError> {
    let value = row.int(column).map_err(backend)?;
    u64::try_from(value).map_err(|_| StoreError::Unreadable {
        id,
        reason: format!("column {column} holds {value}, a negative time or count"),
    })
}

/// A session from a row of `id, client_id, transport, created_at,
/// updated_at, last_activity, ttl_ms, version, data` (as text).
pub(super) fn decode(row: &impl Columns) -> Result<Session, StoreError> {
    let id = read_id(row, 0)?;
    let text = row.text(8).map_err(backend)?;
    Ok(Session {
        id,
        client_id: row.text(1).map_err(backend)?.into(),
        transport: row.text(2).map_err(backend)?.into(),
        created_at: read_ms(row, id, 3)?,
        updated_at: read_ms(row, id, 4)?,
        last_activity: read_ms(row, id, 5)?,
        ttl: Duration::from_millis(read_ms(row, id, 6)?),
        version: read_ms(row, id, 7)?,
        data: read_data(id, &text)?,
    })
}

pub(super) fn status_code(status: JournalStatus) -> i16 {
    match status {
        JournalStatus::Pending => 0,
        JournalStatus::Committed => 1,
        JournalStatus::Aborted => 2,
    }
}

pub(super) fn status_of(id: SessionId, code: i16) -> Result<JournalStatus, StoreError> {
    match code {
        0 => Ok(JournalStatus::Pending),
        1 => Ok(JournalStatus::Committed),
        2 => Ok(JournalStatus::Aborted),
        other => Err(StoreError::Unreadable {
            id,
            reason: format!("journal status {other} is none of 0, 1, 2"),
        }),
    }
}

/// Why a mark changed nothing, from what the session's row said: `found`
/// is `None` with no such session, else whether it is alive and the
/// record's status (`None`: no such record).
pub(super) fn mark_refused(
    id: SessionId,
    seq: u64,
    to: JournalStatus,
    found: Option<(bool, Option<i16>)>,
) -> Result<StoreError, StoreError> {
    Ok(match found {
        None | Some((false, _)) => StoreError::NotFound,
        Some((true, None)) => StoreError::NoJournalRecord { seq },
        Some((true, Some(code))) => StoreError::JournalTransition {
            seq,
            from: status_of(id, code)?,
            to,
        },
    })
}

/// A journal record from `seq, at, kind, target, content_hash, status`
/// starting at column `from`.
pub(super) fn decode_record(
    row: &impl Columns,
    id: SessionId,
    from: usize,
) -> Result<JournalRecord, StoreError> {
    let text = |i: usize| row.text(from + i).map_err(backend);
    Ok(JournalRecord {
        seq: read_ms(row, id, from)?,
        at: read_ms(row, id, from + 1)?,
        entry: JournalEntry {
            kind: text(2)?,
            target: text(3)?,
            content_hash: text(4)?,
        },
        status: status_of(id, row.small(from + 5).map_err(backend)?)?,
    })
}

/// Why a statement's work failed: a store error of its own making
/// (`Conflict`, `JournalFull`, …) or the database's.
pub(super) enum Failure {
    Store(StoreError),
    Sql(sqlx::Error),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

/// The connection died under the statement (I/O, protocol, TLS; SQLSTATE
/// class 08, MySQL's 08S01 included, or PostgreSQL's 57P01..57P03 for a
/// server shutting down): whatever was
/// sent may or may not have been applied.
pub(super) fn lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Whether a statement only reads (a lost connection is retried once, on
/// a fresh one) or writes (a lost connection is
/// [`StoreError::OutcomeUnknown`]: the write may have been applied).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Read,
    Write,
}

/// Commits `tx` when its work succeeded, else rolls it back now: a
/// transaction merely dropped keeps its locks (a session's row, for one)
/// until the pool next resets that connection, which may be long on a
/// quiet pool.
pub(super) async fn settle<T, DB: sqlx::Database>(
    tx: sqlx::Transaction<'_, DB>,
    result: Result<T, Failure>,
) -> Result<T, Failure> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            tx.rollback().await?;
            Err(e)
        }
    }
}

/// Runs `$body`, an async block over `$conn` (the pool's connection) whose
/// errors are [`Failure`]s, on a pooled connection. The connection is
/// marked unknown while the body runs, so one dropped mid-statement (the
/// caller's future was cancelled) or lost is closed, never handed to the
/// next caller half-read; `$mode` says what a lost connection means.
macro_rules! on_connection {
    ($store:expr, $mode:expr, |$conn:ident| $body:block) => {{
        let mut retried = false;
        loop {
            let mut pooled = $store.pool.get().await.map_err(backend)?;
            pooled.mark_unknown();
            let result: Result<_, Failure> = {
                let $conn = &mut *pooled;
                async $body.await
            };
            match result {
                Ok(value) => {
                    pooled.mark_known();
                    break Ok(value);
                }
                // The connection stays marked unknown: closed on drop.
                Err(Failure::Sql(e)) if lost(&e) => match $mode {
                    Mode::Read if !retried => retried = true,
                    Mode::Read => break Err(backend(e)),
                    Mode::Write => break Err(StoreError::OutcomeUnknown(e.into())),
                },
                // The connection is sound; a transaction left open is
                // rolled back by the pool's reset on check-in.
                Err(Failure::Sql(e)) => {
                    pooled.mark_known();
                    break Err(backend(e));
                }
                Err(Failure::Store(e)) => {
                    pooled.mark_known();
                    break Err(e);
                }
            }
        }
    }};
}

pub(super) use on_connection;

#[cfg(test)]
mod tests {
    use super::compact;

    #[test]
    fn compact_drops_whitespace_between_tokens_only() {
        assert_eq!(
            compact(r#"{"a b": "x  y", "c": [1, 2, {"d": "\\\" :"}], "é": "ü ß"}"#),
            r#"{"a b":"x  y","c":[1,2,{"d":"\\\" :"}],"é":"ü ß"}"#
        );
        assert_eq!(compact("[1, 2]"), "[1,2]");
    }
}
