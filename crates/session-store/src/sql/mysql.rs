//! [`MySqlStore`]: the SQL backend on MySQL and MariaDB.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use keel_pool_core::sqlx::mysql::{MySqlDatabaseError, MySqlRow};
use keel_pool_core::sqlx::{
    self, AssertSqlSafe, Connection as _, MySqlConnection, Row as _, SqlSafeStr as _, SqlStr,
};
use keel_pool_core::{MySqlManager, Pool};

use super::SqlConfig;
use super::common::{
    CLEANUP_BATCH, Columns as _, Failure, Mode, decode, decode_record, lost, mark_refused, ms,
    on_connection, read_id, read_ms, settle, status_code, ttl_ms,
};
use super::schema::{self, SchemaError, backend};
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
const COLUMNS: &str = "id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, version, CAST(data AS CHAR)";

/// Every statement, written once for the configured table names.
struct Statements {
    sessions: SqlStr,
    insert: SqlStr,
    get: SqlStr,
    update: SqlStr,
    fixed: SqlStr,
    version: SqlStr,
    touch: SqlStr,
    by_id: SqlStr,
    delete: SqlStr,
    expire_one: SqlStr,
    count: SqlStr,
    count_live: SqlStr,
    by_client: SqlStr,
    cleanup: SqlStr,
    journal_next: SqlStr,
    journal_seq: SqlStr,
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
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )),
            get: safe(format!(
                "SELECT {COLUMNS} FROM {s} WHERE id = ? AND expires_at > ?"
            )),
            // No `UPDATE … RETURNING` here: `fixed` reads the row's fixed
            // columns after a successful update.
            update: safe(format!(
                "UPDATE {s} SET data = ?, version = version + 1, updated_at = ?, last_activity = ?, \
                 ttl_ms = COALESCE(?, ttl_ms), expires_at = ? + COALESCE(?, ttl_ms) \
                 WHERE id = ? AND version = ? AND expires_at > ?"
            )),
            fixed: safe(format!(
                "SELECT client_id, transport, created_at, ttl_ms FROM {s} WHERE id = ?"
            )),
            version: safe(format!(
                "SELECT version FROM {s} WHERE id = ? AND expires_at > ?"
            )),
            touch: safe(format!(
                "UPDATE {s} SET last_activity = ?, expires_at = ? + ttl_ms WHERE id = ? AND expires_at > ?"
            )),
            by_id: safe(format!("SELECT {COLUMNS} FROM {s} WHERE id = ?")),
            delete: safe(format!("DELETE FROM {s} WHERE id = ?")),
            expire_one: safe(format!("DELETE FROM {s} WHERE id = ? AND expires_at <= ?")),
            count: safe(format!("SELECT count(*) FROM {s}")),
            count_live: safe(format!("SELECT count(*) FROM {s} WHERE expires_at > ?")),
            by_client: safe(format!(
                "SELECT {COLUMNS} FROM {s} WHERE client_id = ? AND expires_at > ? ORDER BY created_at, id"
            )),
            cleanup: safe(format!(
                "DELETE FROM {s} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?"
            )),
            journal_next: safe(format!(
                "UPDATE {s} SET journal_seq = journal_seq + 1 WHERE id = ? AND expires_at > ?"
            )),
            journal_seq: safe(format!("SELECT journal_seq FROM {s} WHERE id = ?")),
            journal_count: safe(format!("SELECT count(*) FROM {j} WHERE session_id = ?")),
            journal_oldest_finished: safe(format!(
                "SELECT seq FROM {j} WHERE session_id = ? AND status <> 0 ORDER BY seq LIMIT 1"
            )),
            journal_remove: safe(format!("DELETE FROM {j} WHERE session_id = ? AND seq = ?")),
            journal_insert: safe(format!(
                "INSERT INTO {j} (session_id, seq, at, kind, target, content_hash, status) VALUES (?, ?, ?, ?, ?, ?, ?)"
            )),
            journal_mark: safe(format!(
                "UPDATE {j} j JOIN {s} s ON s.id = j.session_id SET j.status = ? \
                 WHERE j.session_id = ? AND j.seq = ? AND j.status = 0 AND s.expires_at > ?"
            )),
            journal_diagnose: safe(format!(
                "SELECT CAST(s.expires_at > ? AS SIGNED), j.status FROM {s} s \
                 LEFT JOIN {j} j ON j.session_id = s.id AND j.seq = ? WHERE s.id = ?"
            )),
            journal_read: safe(format!(
                "SELECT j.seq, j.at, j.kind, j.target, j.content_hash, j.status FROM {s} s \
                 LEFT JOIN {j} j ON j.session_id = s.id WHERE s.id = ? AND s.expires_at > ? ORDER BY j.seq"
            )),
            export_sessions: safe(format!(
                "SELECT {COLUMNS}, journal_seq FROM {s} WHERE expires_at > ? ORDER BY created_at, id"
            )),
            export_journals: safe(format!(
                "SELECT j.session_id, j.seq, j.at, j.kind, j.target, j.content_hash, j.status \
                 FROM {j} j JOIN {s} s ON s.id = j.session_id WHERE s.expires_at > ? ORDER BY j.session_id, j.seq"
            )),
            clear_sessions: safe(format!("DELETE FROM {s}")),
            clear_journals: safe(format!("DELETE FROM {j}")),
            sessions: safe(s),
        }
    }
}

/// The statements of each migration, in order (see `schema::expand`);
/// each may run again after a migration cut off midway (MySQL's DDL is not
/// transactional), hence `IF NOT EXISTS`.
const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE IF NOT EXISTS {sessions} (
        id BINARY(16) NOT NULL PRIMARY KEY,
        client_id VARCHAR(255) NOT NULL,
        transport VARCHAR(255) NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        last_activity BIGINT NOT NULL,
        ttl_ms BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        journal_seq BIGINT NOT NULL DEFAULT 0,
        data JSON NOT NULL,
        INDEX {idx_client} (client_id, created_at),
        INDEX {idx_expiry} (expires_at)
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS {journal} (
        session_id BINARY(16) NOT NULL,
        seq BIGINT NOT NULL,
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        status SMALLINT NOT NULL,
        PRIMARY KEY (session_id, seq),
        FOREIGN KEY (session_id) REFERENCES {sessions} (id) ON DELETE CASCADE
    ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
]];

/// Applies the migrations not yet applied, one migrator at a time (a named
/// lock, released on every path).
async fn migrate_tables(conn: &mut MySqlConnection, sql: &SqlConfig) -> Result<(), StoreError> {
    let table = sql.table("session_schema");
    // Lock names are at most 64 characters.
    let lock: String = format!("keel:{table}").chars().take(64).collect();
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 60)")
        .bind(&lock)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
    if got != Some(1) {
        return Err(backend(format!("no migration lock {lock:?} within 60 s")));
    }
    let result = migrate_locked(conn, sql, &table).await;
    let released = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(&lock)
        .execute(&mut *conn)
        .await;
    result?;
    released.map(drop).map_err(backend)
}

async fn migrate_locked(
    conn: &mut MySqlConnection,
    sql: &SqlConfig,
    table: &str,
) -> Result<(), StoreError> {
    if let Some(schema) = &sql.schema {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE DATABASE IF NOT EXISTS {schema}"
        )))
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (version INT PRIMARY KEY, \
         applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE = InnoDB"
    )))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let found: Option<i32> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(version) FROM {table}")))
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?;
    for (version, statements) in schema::pending(table, found, MIGRATIONS)? {
        for statement in statements {
            sqlx::query(AssertSqlSafe(schema::expand(statement, sql)))
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (version) VALUES (?)"
        )))
        .bind(version)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

/// Checks the tables are at the version this code knows.
async fn check_tables(conn: &mut MySqlConnection, sql: &SqlConfig) -> Result<(), StoreError> {
    let table = sql.table("session_schema");
    let found = sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(version) FROM {table}")))
        .fetch_one(&mut *conn)
        .await;
    match found {
        Ok(found) => schema::verdict(table, found),
        // 1146: no such table; 1049: no such database.
        Err(e) if matches!(error_number(&e), Some(1146 | 1049)) => {
            Err(SchemaError::Missing { table }.into())
        }
        Err(e) => Err(backend(e)),
    }
}

/// MySQL error 1062 (`ER_DUP_ENTRY`): a random id already taken.
fn is_duplicate(e: &sqlx::Error) -> bool {
    error_number(e) == Some(1062)
}

/// The server's error number of a MySQL or MariaDB error.
fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
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
        let updated = sqlx::query(inner.sql.update.clone())
            .bind(data.as_json())
            .bind(ms(now))
            .bind(ms(now))
            .bind(ttl.map(ttl_ms))
            .bind(ms(now))
            .bind(ttl.map(ttl_ms))
            .bind(key)
            .bind(ms(expected_version))
            .bind(ms(now))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if updated == 1 {
            // The columns no update changes (and the TTL, which this
            // one may have).
            let row = sqlx::query(inner.sql.fixed.clone())
                .bind(key)
                .fetch_one(&mut *conn)
                .await?;
            return Ok(row);
        }
        Err(inner.refused(conn, key, ms(now), expected_version).await)
    })?;
    let id = *id;
    let ttl = match ttl {
        Some(ttl) => ttl,
        None => Duration::from_millis(read_ms(&row, id, 3)?),
    };
    Ok(Arc::new(Session {
        id,
        client_id: row.text(0).map_err(backend)?.into(),
        transport: row.text(1).map_err(backend)?.into(),
        created_at: read_ms(&row, id, 2)?,
        updated_at: now,
        last_activity: now,
        ttl,
        version: expected_version + 1,
        data,
    }))
}

/// Slides the session's expiry from now.
async fn touch(inner: &Inner, id: &SessionId) -> Result<Arc<Session>, StoreError> {
    let now = ms(inner.now());
    let key = id.as_bytes().as_slice();
    let row = on_connection!(inner, Mode::Write, |conn| {
        let touched = sqlx::query(inner.sql.touch.clone())
            .bind(now)
            .bind(now)
            .bind(key)
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if touched == 0 {
            inner.expire_one(conn, key, now).await?;
            return Ok(None);
        }
        Ok(sqlx::query(inner.sql.by_id.clone())
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?)
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
            let next = sqlx::query(sql.journal_next.clone())
                .bind(key)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if next == 0 {
                return Err(StoreError::NotFound.into());
            }
            // The row is locked by the update until the commit.
            let seq: i64 = sqlx::query_scalar(sql.journal_seq.clone())
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
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
            .bind(status_code(status))
            .bind(key)
            .bind(ms(seq))
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if marked == 1 {
            return Ok(());
        }
        // Why not: no live session, no such record, or already finished.
        let row = sqlx::query(inner.sql.journal_diagnose.clone())
            .bind(now)
            .bind(ms(seq))
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        let found = match row {
            Some(row) => Some((
                row.try_get::<i64, _>(0)? != 0,
                row.try_get::<Option<i16>, _>(1)?,
            )),
            None => None,
        };
        Err(mark_refused(*id, seq, status, found)?.into())
    })
}

/// Every live session's row and every journal row of theirs, read in
/// one transaction.
async fn export_rows(
    inner: &Inner,
    now: i64,
) -> Result<(Vec<MySqlRow>, Vec<MySqlRow>), StoreError> {
    on_connection!(inner, Mode::Read, |conn| {
        // For the next transaction only: one snapshot for both reads.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *conn)
            .await?;
        let mut tx = conn.begin().await?;
        let work = async { inner.export_in(&mut tx, now).await };
        let result = work.await;
        settle(tx, result).await
    })
}

sql_store!(
    /// Sessions in MySQL or MariaDB, shared by every process pointed at the
    /// same tables. Clones share the pool and the expiry sweep.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use keel_pool_core::{MySqlManager, Pool};
    /// use keel_session_store::{NewSession, MySqlStore, SessionStore, SqlConfig, StoreConfig};
    ///
    /// let manager = MySqlManager::from_url(&"mysql://app@db.internal/app".parse()?)?;
    /// let pool = Pool::builder(manager).build().await?;
    /// let sql = SqlConfig::default().with_schema("app");
    /// MySqlStore::migrate(&pool, &sql).await?; // once per release; idempotent
    /// let store = MySqlStore::builder(pool, sql, StoreConfig::default()).build().await?;
    /// let s = store.create(NewSession::new("client-7", "http")).await?;
    /// store.update(&s.id, s.version, s.data.clone()).await?;
    /// # Ok(()) }
    /// ```
    MySqlStore, MySqlManager, MySqlConnection
);
