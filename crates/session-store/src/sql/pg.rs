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
use super::schema::{self, backend};
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

/// Expired rows deleted per statement by a cleanup, so one cleanup never
/// holds a long lock or a huge transaction.
const CLEANUP_BATCH: i64 = 1_000;

/// The columns a session is read from, in [`decode`]'s order.
const COLUMNS: &str =
    "id, client_id, transport, created_at, updated_at, last_activity, ttl_ms, version, data::text";

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
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool<PgManager>,
    sql: Statements,
    config: StoreConfig,
    clock: Arc<dyn Clock>,
    events: Events,
    runtime: tokio::runtime::Handle,
    sweeper: Sweeper,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("sessions", &self.inner.sql.sessions.as_str())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Every statement, written once for the configured table names.
struct Statements {
    sessions: SqlStr,
    insert: SqlStr,
    get: SqlStr,
    update: SqlStr,
    version: SqlStr,
    touch: SqlStr,
    delete: SqlStr,
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

impl PgStore {
    /// A builder over `pool`, the tables `sql` names and the store `config`;
    /// `.clock()`, `.observer()` and `.name()` as for every store, then
    /// `.build().await`.
    pub fn builder(
        pool: Pool<PgManager>,
        sql: SqlConfig,
        config: StoreConfig,
    ) -> StoreBuilder<(Pool<PgManager>, SqlConfig)> {
        StoreBuilder::new((pool, sql), config)
    }

    /// Creates or upgrades the tables `sql` names to this code's version:
    /// idempotent, and safe when several instances run it at once (they
    /// take turns under an advisory lock).
    ///
    /// # Errors
    /// [`StoreError::Config`] for a bad `sql`; [`SchemaError::TooNew`](super::SchemaError::TooNew)
    /// when a newer release migrated the tables; [`StoreError::Backend`]
    /// when the database fails.
    pub async fn migrate(pool: &Pool<PgManager>, sql: &SqlConfig) -> Result<(), StoreError> {
        sql.validate()?;
        let mut conn = pool.get().await.map_err(backend)?;
        schema::migrate(&mut conn, sql).await.map(drop)
    }

    /// The name the store reports under (`StoreBuilder::name`).
    pub fn name(&self) -> &str {
        self.inner.events.name()
    }
}

impl StoreBuilder<(Pool<PgManager>, SqlConfig)> {
    /// Checks the configs and the tables' version, then starts the expiry
    /// sweep (every `cleanup_interval`) on the current tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Config`] naming a bad field; [`StoreError::Schema`]
    /// when the tables are missing, behind or newer than this code;
    /// [`StoreError::Backend`] when the database cannot be reached;
    /// outside a tokio runtime, [`StoreError::Backend`] saying so.
    pub async fn build(self) -> Result<PgStore, StoreError> {
        let events = self.events();
        let StoreBuilder {
            backend: (pool, sql),
            config,
            clock,
            ..
        } = self;
        config.validate()?;
        sql.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::Backend(
                "PgStore needs a tokio runtime (its pool and sweep run on it)".into(),
            )
        })?;
        schema::check(&mut *pool.get().await.map_err(backend)?, &sql).await?;
        let inner = Arc::new(Inner {
            pool,
            sql: Statements::new(&sql),
            config,
            clock,
            events,
            runtime,
            sweeper: Sweeper::default(),
        });
        inner.sweeper.start(
            Arc::downgrade(&inner),
            inner.config.cleanup_interval,
            |inner| {
                // The sweeper calls this on a blocking thread.
                let _ = inner.runtime.block_on(cleanup(inner));
            },
        )?;
        Ok(PgStore { inner })
    }
}

/// Milliseconds as PostgreSQL's BIGINT (times far past 2^63 ms saturate).
fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// A session's data as stored: JSONB's text (`{"a": 1, "b": [1, 2]}`)
/// made compact again, then checked to be a JSON object.
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
fn compact(text: &str) -> String {
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

fn read_id(row: &PgRow, column: usize) -> Result<SessionId, StoreError> {
    let bytes: Vec<u8> = row.try_get(column).map_err(backend)?;
    let len = bytes.len();
    let bytes: [u8; 16] = bytes
        .try_into()
        .map_err(|_| backend(format!("a session id of {len} bytes, not 16")))?;
    Ok(SessionId::from_bytes(bytes))
}

/// A millisecond column, which must not be negative.
fn read_ms(row: &PgRow, id: SessionId, column: usize) -> Result<u64, StoreError> {
    let value: i64 = row.try_get(column).map_err(backend)?;
    u64::try_from(value).map_err(|_| StoreError::Unreadable {
        id,
        reason: format!("column {column} holds {value}, a negative time or count"),
    })
}

/// A session from a row of [`COLUMNS`].
fn decode(row: &PgRow) -> Result<Session, StoreError> {
    let id = read_id(row, 0)?;
    let text: String = row.try_get(8).map_err(backend)?;
    Ok(Session {
        id,
        client_id: row.try_get::<String, _>(1).map_err(backend)?.into(),
        transport: row.try_get::<String, _>(2).map_err(backend)?.into(),
        created_at: read_ms(row, id, 3)?,
        updated_at: read_ms(row, id, 4)?,
        last_activity: read_ms(row, id, 5)?,
        ttl: Duration::from_millis(read_ms(row, id, 6)?),
        version: read_ms(row, id, 7)?,
        data: read_data(id, &text)?,
    })
}

fn status_code(status: JournalStatus) -> i16 {
    match status {
        JournalStatus::Pending => 0,
        JournalStatus::Committed => 1,
        JournalStatus::Aborted => 2,
    }
}

fn status_of(id: SessionId, code: i16) -> Result<JournalStatus, StoreError> {
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

/// A journal record from `seq, at, kind, target, content_hash, status`
/// starting at column `from`.
fn decode_record(row: &PgRow, id: SessionId, from: usize) -> Result<JournalRecord, StoreError> {
    let text = |i: usize| row.try_get::<String, _>(from + i).map_err(backend);
    Ok(JournalRecord {
        seq: read_ms(row, id, from)?,
        at: read_ms(row, id, from + 1)?,
        entry: JournalEntry {
            kind: text(2)?,
            target: text(3)?,
            content_hash: text(4)?,
        },
        status: status_of(id, row.try_get(from + 5).map_err(backend)?)?,
    })
}

/// Why a statement's work failed: a store error of its own making
/// (`Conflict`, `JournalFull`, …) or the database's.
enum Failure {
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
/// class 08, or 57P01..57P03 for a server shutting down): whatever was
/// sent may or may not have been applied.
fn lost(e: &sqlx::Error) -> bool {
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
enum Mode {
    Read,
    Write,
}

/// Runs `$body`, an async block over `$conn: &mut PgConnection` whose
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
                let $conn: &mut PgConnection = &mut pooled;
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

/// Commits `tx` when its work succeeded, else rolls it back now: a
/// transaction merely dropped keeps its locks (a session's row, for one)
/// until the pool next resets that connection, which may be long on a
/// quiet pool.
async fn settle<T>(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
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

/// Deletes expired sessions in batches; reports how many.
async fn cleanup(inner: &Inner) -> Result<usize, StoreError> {
    let now = ms(inner.clock.now_millis());
    let removed: u64 = on_connection!(inner, Mode::Write, |conn| {
        let mut removed = 0u64;
        loop {
            let done = sqlx::query(inner.sql.cleanup.clone())
                .bind(now)
                .bind(CLEANUP_BATCH)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            removed += done;
            if done < CLEANUP_BATCH.unsigned_abs() {
                break;
            }
        }
        Ok(removed)
    })?;
    let count = usize::try_from(removed).unwrap_or(usize::MAX);
    if count > 0 {
        inner.events.emit(|name| Event::Expired { name, count });
    }
    Ok(count)
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now_millis()
    }

    /// Refuses a create when `max_sessions` sessions are alive.
    async fn make_room(&self, conn: &mut PgConnection, now: i64) -> Result<(), Failure> {
        let Some(limit) = self.config.max_sessions else {
            return Ok(());
        };
        let live: i64 = sqlx::query_scalar(self.sql.count_live.clone())
            .bind(now)
            .fetch_one(conn)
            .await?;
        if usize::try_from(live).unwrap_or(usize::MAX) >= limit {
            return Err(StoreError::TooManySessions { limit }.into());
        }
        Ok(())
    }

    async fn insert(
        &self,
        conn: &mut PgConnection,
        session: &Session,
        journal_seq: u64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(self.sql.insert.clone())
            .bind(session.id.as_bytes().as_slice())
            .bind(&*session.client_id)
            .bind(&*session.transport)
            .bind(ms(session.created_at))
            .bind(ms(session.updated_at))
            .bind(ms(session.last_activity))
            .bind(ttl_ms(session.ttl))
            .bind(ms(session.expires_at()))
            .bind(ms(session.version))
            .bind(ms(journal_seq))
            .bind(session.data.as_json())
            .execute(conn)
            .await
            .map(drop)
    }

    async fn insert_records(
        &self,
        conn: &mut PgConnection,
        id: SessionId,
        records: &[JournalRecord],
    ) -> Result<(), sqlx::Error> {
        for record in records {
            sqlx::query(self.sql.journal_insert.clone())
                .bind(id.as_bytes().as_slice())
                .bind(ms(record.seq))
                .bind(ms(record.at))
                .bind(&record.entry.kind)
                .bind(&record.entry.target)
                .bind(&record.entry.content_hash)
                .bind(status_code(record.status))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// 23505: unique_violation (a random id already taken).
fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

impl SessionStore for PgStore {
    async fn create(&self, new: NewSession) -> Result<Arc<Session>, StoreError> {
        let inner = &*self.inner;
        inner.config.check_size(&new.data)?;
        let now = inner.now();
        let mut session = Session::create(new, SessionId::random()?, now, inner.config.default_ttl);
        on_connection!(inner, Mode::Write, |conn| {
            inner.make_room(conn, ms(now)).await?;
            loop {
                match inner.insert(conn, &session, 0).await {
                    Ok(()) => return Ok(()),
                    Err(e) if is_duplicate(&e) => session.id = SessionId::random()?,
                    Err(e) => return Err(e.into()),
                }
            }
        })?;
        inner.events.emit(|name| Event::Created { name });
        Ok(Arc::new(session))
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let inner = &*self.inner;
        let now = ms(inner.now());
        let row = on_connection!(inner, Mode::Read, |conn| {
            Ok(sqlx::query(inner.sql.get.clone())
                .bind(id.as_bytes().as_slice())
                .bind(now)
                .fetch_optional(conn)
                .await?)
        })?;
        row.map(|row| decode(&row).map(Arc::new)).transpose()
    }

    async fn update_with_ttl(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: Data,
        ttl: Option<Duration>,
    ) -> Result<Arc<Session>, StoreError> {
        let inner = &*self.inner;
        inner.config.check_size(&data)?;
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
            // Why not: a newer version, or no live session.
            let current: Option<i64> = sqlx::query_scalar(inner.sql.version.clone())
                .bind(key)
                .bind(ms(now))
                .fetch_optional(&mut *conn)
                .await?;
            Err(match current {
                Some(actual) => StoreError::Conflict {
                    expected: expected_version,
                    actual: actual.unsigned_abs(),
                },
                None => StoreError::NotFound,
            }
            .into())
        })
        .inspect_err(|e| {
            if matches!(e, StoreError::Conflict { .. }) {
                inner.events.emit(|name| Event::Conflict { name });
            }
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

    async fn touch(&self, id: &SessionId) -> Result<Arc<Session>, StoreError> {
        let inner = &*self.inner;
        let now = ms(inner.now());
        let row = on_connection!(inner, Mode::Write, |conn| {
            Ok(sqlx::query(inner.sql.touch.clone())
                .bind(id.as_bytes().as_slice())
                .bind(now)
                .fetch_optional(conn)
                .await?)
        })?;
        match row {
            Some(row) => decode(&row).map(Arc::new),
            None => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let removed = on_connection!(inner, Mode::Write, |conn| {
            Ok(sqlx::query(inner.sql.delete.clone())
                .bind(id.as_bytes().as_slice())
                .execute(conn)
                .await?
                .rows_affected()
                > 0)
        })?;
        if removed {
            inner.events.emit(|name| Event::Deleted { name });
        }
        Ok(removed)
    }

    /// Every row, expired ones not yet cleaned up included (as every
    /// store counts).
    async fn len(&self) -> Result<usize, StoreError> {
        let inner = &*self.inner;
        let count: i64 = on_connection!(inner, Mode::Read, |conn| {
            Ok(sqlx::query_scalar(inner.sql.count.clone())
                .fetch_one(conn)
                .await?)
        })?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn by_client(&self, client_id: &str) -> Result<Vec<Arc<Session>>, StoreError> {
        let inner = &*self.inner;
        let now = ms(inner.now());
        let rows = on_connection!(inner, Mode::Read, |conn| {
            Ok(sqlx::query(inner.sql.by_client.clone())
                .bind(client_id)
                .bind(now)
                .fetch_all(conn)
                .await?)
        })?;
        rows.iter().map(|row| decode(row).map(Arc::new)).collect()
    }
}

impl ExpiredCleanup for PgStore {
    async fn cleanup_expired(&self) -> Result<usize, StoreError> {
        cleanup(&self.inner).await
    }
}

impl SessionJournal for PgStore {
    async fn journal_append(&self, id: &SessionId, entry: JournalEntry) -> Result<u64, StoreError> {
        let inner = &*self.inner;
        let now = ms(inner.now());
        let limit = inner.config.max_journal_records;
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
                let held: i64 = sqlx::query_scalar(sql.journal_count.clone())
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                if usize::try_from(held).unwrap_or(usize::MAX) >= limit {
                    let finished: Option<i64> =
                        sqlx::query_scalar(sql.journal_oldest_finished.clone())
                            .bind(key)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let finished = finished.ok_or(StoreError::JournalFull { limit })?;
                    sqlx::query(sql.journal_remove.clone())
                        .bind(key)
                        .bind(finished)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(sql.journal_insert.clone())
                    .bind(key)
                    .bind(seq)
                    .bind(now)
                    .bind(&entry.kind)
                    .bind(&entry.target)
                    .bind(&entry.content_hash)
                    .bind(status_code(JournalStatus::Pending))
                    .execute(&mut *tx)
                    .await?;
                Ok(seq)
            };
            let result = work.await;
            settle(tx, result).await
        })?;
        Ok(seq.unsigned_abs())
    }

    async fn journal_mark(
        &self,
        id: &SessionId,
        seq: u64,
        status: JournalStatus,
    ) -> Result<(), StoreError> {
        if status == JournalStatus::Pending {
            return Err(StoreError::JournalTransition {
                seq,
                from: JournalStatus::Pending,
                to: status,
            });
        }
        let inner = &*self.inner;
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
            let Some(row) = row else {
                return Err(StoreError::NotFound.into());
            };
            if !row.try_get::<bool, _>(0)? {
                return Err(StoreError::NotFound.into());
            }
            Err(match row.try_get::<Option<i16>, _>(1)? {
                None => StoreError::NoJournalRecord { seq },
                Some(code) => StoreError::JournalTransition {
                    seq,
                    from: status_of(*id, code)?,
                    to: status,
                },
            }
            .into())
        })
    }

    async fn journal(&self, id: &SessionId) -> Result<Vec<JournalRecord>, StoreError> {
        let inner = &*self.inner;
        let now = ms(inner.now());
        let rows = on_connection!(inner, Mode::Read, |conn| {
            Ok(sqlx::query(inner.sql.journal_read.clone())
                .bind(id.as_bytes().as_slice())
                .bind(now)
                .fetch_all(conn)
                .await?)
        })?;
        if rows.is_empty() {
            return Err(StoreError::NotFound);
        }
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            // The session's row with no record joined: an empty journal.
            if row.try_get::<Option<i64>, _>(0).map_err(backend)?.is_some() {
                records.push(decode_record(row, *id, 0)?);
            }
        }
        Ok(records)
    }
}

impl SessionExport for PgStore {
    /// Every live session and its journal, read in one repeatable-read
    /// transaction (one consistent moment).
    async fn export(&self) -> Result<Vec<SessionDump>, StoreError> {
        let inner = &*self.inner;
        let now = ms(inner.now());
        let sql = &inner.sql;
        let (sessions, journal_rows) = on_connection!(inner, Mode::Read, |conn| {
            let mut tx = conn.begin().await?;
            let work = async {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                let sessions = sqlx::query(sql.export_sessions.clone())
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                let journal_rows = sqlx::query(sql.export_journals.clone())
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                Ok((sessions, journal_rows))
            };
            let result = work.await;
            settle(tx, result).await
        })?;
        let mut journals: HashMap<SessionId, Vec<JournalRecord>> = HashMap::new();
        for row in &journal_rows {
            let id = read_id(row, 0)?;
            journals
                .entry(id)
                .or_default()
                .push(decode_record(row, id, 1)?);
        }
        sessions
            .iter()
            .map(|row| {
                let session = decode(row)?;
                let last_seq = read_ms(row, session.id, 9)?;
                let records = journals.remove(&session.id).unwrap_or_default();
                Ok(SessionDump {
                    journal: Journal::from_parts(last_seq, records),
                    session: Arc::new(session),
                })
            })
            .collect()
    }

    /// Replaces every session with `dumps`, in one transaction: a failure
    /// leaves the store as it was.
    async fn import(&self, dumps: Vec<SessionDump>) -> Result<usize, StoreError> {
        let inner = &*self.inner;
        let dumps = backup::admit(dumps, &inner.config, inner.now())?;
        let sql = &inner.sql;
        on_connection!(inner, Mode::Write, |conn| {
            let mut tx = conn.begin().await?;
            let work = async {
                for clear in [&sql.clear_journals, &sql.clear_sessions] {
                    sqlx::query(clear.clone()).execute(&mut *tx).await?;
                }
                for dump in &dumps {
                    inner
                        .insert(&mut tx, &dump.session, dump.journal.last_seq())
                        .await?;
                    inner
                        .insert_records(&mut tx, dump.session.id, &dump.journal.records())
                        .await?;
                }
                Ok(dumps.len())
            };
            let result = work.await;
            settle(tx, result).await
        })
    }
}

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
