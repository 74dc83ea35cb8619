//! [`PgStore`]: the SQL backend on PostgreSQL.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use keel_pool_core::sqlx::postgres::PgRow;
use keel_pool_core::sqlx::{
    self, AssertSqlSafe, Connection as _, PgConnection, Row as _, SqlSafeStr as _, SqlStr,
};
use keel_pool_core::{PgManager, Pool};

use super::SqlConfig;
use super::common::{
    CLEANUP_BATCH, Failure, Mode, decode, decode_record, lost, mark_refused, ms, on_connection,
    read_id, read_ms, settle, status_code, ttl_ms,
};
use super::schema::{self, backend};
use super::store::{Row, sql_store};
use crate::backup::{self, SessionDump};
use crate::builder::StoreBuilder;
use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::journal::{Journal, JournalEntry, JournalRecord, JournalStatus};
use crate::observer::{Event, Events};
use crate::session::{NewSession, Session};
use crate::store::{ExpiredCleanup, SessionExport, SessionJournal, SessionStore};
use crate::sweeper::Sweeper;

/// The columns a session is read from, in [`decode`]'s order.
const COLUMNS: &str =
    "id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, version, data::text";

/// Every statement, written once for the configured table names.
struct Statements {
    sessions: SqlStr,
    insert: SqlStr,
    get: SqlStr,
    update: SqlStr,
    version: SqlStr,
    touch: SqlStr,
    delete: SqlStr,
    expire_one: SqlStr,
    count: SqlStr,
    count_live: SqlStr,
    by_client: SqlStr,
    cleanup: SqlStr,
    journal_next: SqlStr,
    journal_count: SqlStr,
    journal_oldest_finished: SqlStr,
    journal_remove: SqlStr,
    journal_insert: SqlStr,
    journal_mark: SqlStr,
    journal_diagnose: SqlStr,
    journal_read: SqlStr,
    export_sessions: SqlStr,
    export_journals: SqlStr,
    clear_sessions: SqlStr,
    clear_journals: SqlStr,
}

impl Statements {
    fn new(sql: &SqlConfig) -> Self {
        let s = sql.table("sessions");
        let j = sql.table("session_journal");
        // Audited: the only text not written here is the table names,
        // which `SqlConfig::validate` holds to plain identifiers.
        let safe = |text: String| AssertSqlSafe(Arc::<str>::from(text)).into_sql_str();
        Self {
            insert: safe(format!(
                "INSERT INTO {s} (id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, expires_at, version, journal_seq, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)"
            )),
            get: safe(format!(
                "SELECT {COLUMNS} FROM {s} WHERE id = $1 AND expires_at > $2"
            )),
            update: safe(format!(
                "UPDATE {s} SET data = $3::jsonb, version = version + 1, updated_at = $4, last_activity = $4, \
                 ttl_ms = COALESCE($5, ttl_ms), expires_at = $4 + COALESCE($5, ttl_ms) \
                 WHERE id = $1 AND version = $2 AND expires_at > $4 \
                 RETURNING client_id, transport, created_at, ttl_ms, version"
            )),
            version: safe(format!(
                "SELECT version FROM {s} WHERE id = $1 AND expires_at > $2"
            )),
            touch: safe(format!(
                "UPDATE {s} SET last_activity = $2, expires_at = $2 + ttl_ms \
                 WHERE id = $1 AND expires_at > $2 RETURNING {COLUMNS}"
            )),
            delete: safe(format!("DELETE FROM {s} WHERE id = $1")),
            expire_one: safe(format!(
                "DELETE FROM {s} WHERE id = $1 AND expires_at <= $2"
            )),
            count: safe(format!("SELECT count(*) FROM {s}")),
            count_live: safe(format!("SELECT count(*) FROM {s} WHERE expires_at > $1")),
            by_client: safe(format!(
                "SELECT {COLUMNS} FROM {s} WHERE client_id = $1 AND expires_at > $2 ORDER BY created_at, id"
            )),
            cleanup: safe(format!(
                "DELETE FROM {s} WHERE id IN (SELECT id FROM {s} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)"
            )),
            journal_next: safe(format!(
                "UPDATE {s} SET journal_seq = journal_seq + 1 WHERE id = $1 AND expires_at > $2 RETURNING journal_seq"
            )),
            journal_count: safe(format!("SELECT count(*) FROM {j} WHERE session_id = $1")),
            journal_oldest_finished: safe(format!(
                "SELECT seq FROM {j} WHERE session_id = $1 AND status <> 0 ORDER BY seq LIMIT 1"
            )),
            journal_remove: safe(format!(
                "DELETE FROM {j} WHERE session_id = $1 AND seq = $2"
            )),
            journal_insert: safe(format!(
                "INSERT INTO {j} (session_id, seq, at, kind, target, content_hash, status) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            )),
            journal_mark: safe(format!(
                "UPDATE {j} SET status = $3 FROM {s} \
                 WHERE {j}.session_id = $1 AND {j}.seq = $2 AND {j}.status = 0 \
                 AND {s}.id = $1 AND {s}.expires_at > $4"
            )),
            journal_diagnose: safe(format!(
                "SELECT s.expires_at > $3, j.status FROM {s} s \
                 LEFT JOIN {j} j ON j.session_id = s.id AND j.seq = $2 WHERE s.id = $1"
            )),
            journal_read: safe(format!(
                "SELECT j.seq, j.at, j.kind, j.target, j.content_hash, j.status FROM {s} s \
                 LEFT JOIN {j} j ON j.session_id = s.id WHERE s.id = $1 AND s.expires_at > $2 ORDER BY j.seq"
            )),
            export_sessions: safe(format!(
                "SELECT {COLUMNS}, journal_seq FROM {s} WHERE expires_at > $1 ORDER BY created_at, id"
            )),
            export_journals: safe(format!(
                "SELECT j.session_id, j.seq, j.at, j.kind, j.target, j.content_hash, j.status \
                 FROM {j} j JOIN {s} s ON s.id = j.session_id WHERE s.expires_at > $1 ORDER BY j.session_id, j.seq"
            )),
            clear_sessions: safe(format!("DELETE FROM {s}")),
            clear_journals: safe(format!("DELETE FROM {j}")),
            sessions: safe(s),
        }
    }
}

/// Creates or upgrades the tables (see `schema::migrate`).
async fn migrate_tables(conn: &mut PgConnection, sql: &SqlConfig) -> Result<(), StoreError> {
    schema::migrate(conn, sql).await.map(drop)
}

/// Checks the tables' version (see `schema::check`).
async fn check_tables(conn: &mut PgConnection, sql: &SqlConfig) -> Result<(), StoreError> {
    schema::check(conn, sql).await
}

/// 23505: unique_violation (a random id already taken).
fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// Writes `data` over version `expected_version` (compare-and-swap).
async fn update(
    inner: &Inner,
    id: &SessionId,
    expected_version: u64,
    data: Data,
    ttl: Option<Duration>,
) -> Result<Arc<Session>, StoreError> {
    let now = inner.now();
    let key = id.as_bytes().as_slice();
    let row = on_connection!(inner, Mode::Write, |conn| {
        let row = sqlx::query(inner.sql.update.clone())
            .bind(key)
            .bind(ms(expected_version))
            .bind(data.as_json())
            .bind(ms(now))
            .bind(ttl.map(ttl_ms))
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            return Ok(row);
        }
        Err(inner.refused(conn, key, ms(now), expected_version).await)
    })?;
    let id = *id;
    Ok(Arc::new(Session {
        id,
        client_id: row.try_get::<String, _>(0).map_err(backend)?.into(),
        transport: row.try_get::<String, _>(1).map_err(backend)?.into(),
        created_at: read_ms(&row, id, 2)?,
        updated_at: now,
        last_activity: now,
        ttl: Duration::from_millis(read_ms(&row, id, 3)?),
        version: read_ms(&row, id, 4)?,
        data,
    }))
}

/// Slides the session's expiry from now.
async fn touch(inner: &Inner, id: &SessionId) -> Result<Arc<Session>, StoreError> {
    let now = ms(inner.now());
    let key = id.as_bytes().as_slice();
    let row = on_connection!(inner, Mode::Write, |conn| {
        let row = sqlx::query(inner.sql.touch.clone())
            .bind(key)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        if row.is_none() {
            inner.expire_one(conn, key, now).await?;
        }
        Ok(row)
    })?;
    match row {
        Some(row) => decode(&row).map(Arc::new),
        None => Err(StoreError::NotFound),
    }
}

/// Appends a pending record, making room as `max_journal_records` says.
async fn journal_append(
    inner: &Inner,
    id: &SessionId,
    entry: JournalEntry,
) -> Result<u64, StoreError> {
    let now = ms(inner.now());
    let sql = &inner.sql;
    let key = id.as_bytes().as_slice();
    let seq: i64 = on_connection!(inner, Mode::Write, |conn| {
        let mut tx = conn.begin().await?;
        let work = async {
            let seq: Option<i64> = sqlx::query_scalar(sql.journal_next.clone())
                .bind(key)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let seq = seq.ok_or(StoreError::NotFound)?;
            inner.append_record(&mut tx, key, seq, now, &entry).await?;
            Ok(seq)
        };
        let result = work.await;
        settle(tx, result).await
    })?;
    Ok(seq.unsigned_abs())
}

/// Finishes pending record `seq` as `status`.
async fn journal_mark(
    inner: &Inner,
    id: &SessionId,
    seq: u64,
    status: JournalStatus,
) -> Result<(), StoreError> {
    let now = ms(inner.now());
    let key = id.as_bytes().as_slice();
    on_connection!(inner, Mode::Write, |conn| {
        let marked = sqlx::query(inner.sql.journal_mark.clone())
            .bind(key)
            .bind(ms(seq))
            .bind(status_code(status))
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if marked == 1 {
            return Ok(());
        }
        // Why not: no live session, no such record, or already finished.
        let row = sqlx::query(inner.sql.journal_diagnose.clone())
            .bind(key)
            .bind(ms(seq))
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        let found = match row {
            Some(row) => Some((
                row.try_get::<bool, _>(0)?,
                row.try_get::<Option<i16>, _>(1)?,
            )),
            None => None,
        };
        Err(mark_refused(*id, seq, status, found)?.into())
    })
}

/// Every live session's row and every journal row of theirs, read in
/// one transaction.
async fn export_rows(inner: &Inner, now: i64) -> Result<(Vec<PgRow>, Vec<PgRow>), StoreError> {
    on_connection!(inner, Mode::Read, |conn| {
        let mut tx = conn.begin().await?;
        let work = async {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            inner.export_in(&mut tx, now).await
        };
        let result = work.await;
        settle(tx, result).await
    })
}

sql_store!(
    /// Sessions in PostgreSQL, shared by every process pointed at the same
    /// tables. Clones share the pool and the expiry sweep.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use keel_pool_core::{PgManager, Pool};
    /// use keel_session_store::{NewSession, PgStore, SessionStore, SqlConfig, StoreConfig};
    ///
    /// let manager = PgManager::from_url(&"postgres://app@db.internal/app".parse()?)?;
    /// let pool = Pool::builder(manager).build().await?;
    /// let sql = SqlConfig::default().with_schema("sessions");
    /// PgStore::migrate(&pool, &sql).await?; // once per release; idempotent
    /// let store = PgStore::builder(pool, sql, StoreConfig::default()).build().await?;
    /// let s = store.create(NewSession::new("client-7", "http")).await?;
    /// store.update(&s.id, s.version, s.data.clone()).await?;
    /// # Ok(()) }
    /// ```
    PgStore, PgManager, PgConnection
);
