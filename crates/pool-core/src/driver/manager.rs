//! A [`Manager`] for any sqlx connection: PostgreSQL, MySQL / MariaDB and
//! SQLite through one generic adapter.

use std::fmt;
use std::str::FromStr;

use sqlx::{ConnectOptions, Connection};

use super::url::{DatabaseUrl, UrlError, UrlPart};
use crate::cancel::Canceller;
use crate::manager::{CheckIn, Manager, ServerState};

/// Pools sqlx connections of type `C`.
///
/// - validation is a `ping` (only after `validate_after_idle`);
/// - a connection returned inside a transaction, or with a rollback sqlx
///   queued when a `Transaction` was dropped, is reset (the rollback is
///   flushed) before its next checkout, and closed if that fails;
/// - the server's "too many connections" (PostgreSQL 53300, MySQL 1040)
///   makes a checkout wait for a connection another task returns;
/// - `Debug` shows the URL with the password redacted.
pub struct SqlxManager<C: Connection> {
    options: C::Options,
}

/// PostgreSQL connections.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub type PgManager = SqlxManager<sqlx::PgConnection>;

/// MySQL and MariaDB connections.
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub type MySqlManager = SqlxManager<sqlx::MySqlConnection>;

/// SQLite connections.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub type SqliteManager = SqlxManager<sqlx::SqliteConnection>;

impl<C: Connection> SqlxManager<C> {
    /// A manager connecting with `options`.
    pub fn new(options: C::Options) -> Self {
        Self { options }
    }

    /// A manager for a database URL.
    ///
    /// # Errors
    /// [`UrlError`] naming the bad part (never echoing the password) when
    /// the URL does not parse or the driver rejects an option.
    pub fn from_url(url: &DatabaseUrl) -> Result<Self, UrlError> {
        let options = C::Options::from_str(url.expose()).map_err(|e| {
            // The driver's message may quote the URL: keep it only if it
            // holds no secret.
            let message = e.to_string();
            let password = url::Url::parse(url.expose())
                .ok()
                .and_then(|u| u.password().map(str::to_owned));
            let safe = password.is_none_or(|p| p.is_empty() || !message.contains(&p));
            UrlError::new(
                UrlPart::Options,
                if safe {
                    message
                } else {
                    "rejected by the driver".to_owned()
                },
            )
        })?;
        Ok(Self::new(options))
    }

    /// Opens one connection outside the pool, with the pool's options (an
    /// admin or LISTEN connection, say). The options themselves are not
    /// handed out: sqlx's `Debug` of them prints the password.
    ///
    /// # Errors
    /// The driver's connect error.
    pub async fn connect_unpooled(&self) -> Result<C, sqlx::Error> {
        self.options.connect().await
    }

    /// The URL with the password shown as `***`.
    pub fn redacted_url(&self) -> String {
        let mut url = self.options.to_url_lossy();
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        url.into()
    }
}

impl<C: Connection> fmt::Debug for SqlxManager<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxManager")
            .field("url", &self.redacted_url())
            .finish()
    }
}

/// Whether an sqlx error is the server refusing a connection for lack of
/// slots: PostgreSQL `53300 too_many_connections` (server-wide or a role's
/// `CONNECTION LIMIT`); MySQL / MariaDB 1040 (server-wide), 1203 and 1226
/// (a user's connection limit).
pub fn is_too_many_connections(error: &sqlx::Error) -> bool {
    let Some(db) = error.as_database_error() else {
        return false;
    };
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1040 | 1203 | 1226);
    }
    db.code()
        .is_some_and(|code| code == "53300" || code == "08004")
}

/// The sqlx connection types [`SqlxManager`] pools, each with its way to
/// cancel a running command from outside the connection:
///
/// - PostgreSQL: the backend's pid is read at connect
///   (`pg_backend_pid()`); a cancel opens a short side connection with the
///   same options and runs `pg_cancel_backend(pid)`;
/// - MySQL / MariaDB: likewise with `CONNECTION_ID()` and `KILL QUERY id`;
/// - SQLite: none (the database is in process; an abandoned statement
///   stops when its connection closes).
pub trait SqlxConnection: Connection + sealed::Sealed {
    /// Captures what cancels this connection's commands; `options` are the
    /// ones it was opened with, reused for the side connection.
    fn canceller(
        &mut self,
        options: &Self::Options,
    ) -> impl Future<Output = Result<Option<Canceller>, sqlx::Error>> + Send;

    /// Whether the server is a standby and whether it takes writes (see
    /// [`Manager::server_state`]).
    fn server_state(
        &mut self,
    ) -> impl Future<Output = Result<Option<ServerState>, sqlx::Error>> + Send;

    /// A standby's replay lag (see [`Manager::replay_lag`]); `None` where
    /// the backend has no standard way to tell.
    fn replay_lag(
        &mut self,
    ) -> impl Future<Output = Result<Option<std::time::Duration>, sqlx::Error>> + Send {
        async { Ok(None) }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A canceller that opens a side connection with `options` and runs `sql`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn side_connection_canceller<C: Connection>(options: &C::Options, sql: String) -> Canceller
where
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let options = options.clone();
    Canceller::new(move || {
        let options = options.clone();
        let sql = sql.clone();
        async move {
            let mut side: C = options.connect().await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut side)
                .await?;
            let _ = side.close().await;
            Ok::<(), crate::op::BoxError>(())
        }
    })
}

#[cfg(feature = "postgres")]
impl sealed::Sealed for sqlx::PgConnection {}

#[cfg(feature = "postgres")]
impl SqlxConnection for sqlx::PgConnection {
    async fn canceller(
        &mut self,
        options: &sqlx::postgres::PgConnectOptions,
    ) -> Result<Option<Canceller>, sqlx::Error> {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *self)
            .await?;
        // An integer, formatted: nothing to inject.
        let sql = format!("SELECT pg_cancel_backend({pid})");
        Ok(Some(side_connection_canceller::<Self>(options, sql)))
    }

    async fn server_state(&mut self) -> Result<Option<ServerState>, sqlx::Error> {
        let (in_recovery, read_only): (bool, bool) = sqlx::query_as(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
        )
        .fetch_one(&mut *self)
        .await?;
        Ok(Some(ServerState {
            in_recovery,
            read_only,
        }))
    }

    async fn replay_lag(&mut self) -> Result<Option<std::time::Duration>, sqlx::Error> {
        // Caught up (all received WAL replayed) is no lag, however long
        // ago the primary last wrote; else the age of the last replayed
        // transaction. NULL on a primary.
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL \
             WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
             ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END",
        )
        .fetch_one(&mut *self)
        .await?;
        Ok(seconds.map(|s| std::time::Duration::from_secs_f64(s.max(0.0))))
    }
}

#[cfg(feature = "mysql")]
impl sealed::Sealed for sqlx::MySqlConnection {}

#[cfg(feature = "mysql")]
impl SqlxConnection for sqlx::MySqlConnection {
    async fn canceller(
        &mut self,
        options: &sqlx::mysql::MySqlConnectOptions,
    ) -> Result<Option<Canceller>, sqlx::Error> {
        let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
            .fetch_one(&mut *self)
            .await?;
        let sql = format!("KILL QUERY {id}");
        Ok(Some(side_connection_canceller::<Self>(options, sql)))
    }

    async fn server_state(&mut self) -> Result<Option<ServerState>, sqlx::Error> {
        // MySQL has no recovery mode: a replica is a server kept read-only.
        let read_only: i64 = sqlx::query_scalar("SELECT @@global.read_only + 0")
            .fetch_one(&mut *self)
            .await?;
        let read_only = read_only != 0;
        Ok(Some(ServerState {
            in_recovery: read_only,
            read_only,
        }))
    }
}

#[cfg(feature = "sqlite")]
impl sealed::Sealed for sqlx::SqliteConnection {}

#[cfg(feature = "sqlite")]
impl SqlxConnection for sqlx::SqliteConnection {
    async fn canceller(
        &mut self,
        _options: &sqlx::sqlite::SqliteConnectOptions,
    ) -> Result<Option<Canceller>, sqlx::Error> {
        Ok(None)
    }

    async fn server_state(&mut self) -> Result<Option<ServerState>, sqlx::Error> {
        // A file in process: always the one writable copy.
        Ok(Some(ServerState::PRIMARY))
    }
}

impl<C> Manager for SqlxManager<C>
where
    C: SqlxConnection + 'static,
{
    type Connection = C;
    type Error = sqlx::Error;

    fn connect(&self) -> impl Future<Output = Result<C, sqlx::Error>> + Send {
        self.options.connect()
    }

    fn validate(&self, conn: &mut C) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        conn.ping()
    }

    fn canceller(
        &self,
        conn: &mut C,
    ) -> impl Future<Output = Result<Option<Canceller>, sqlx::Error>> + Send {
        conn.canceller(&self.options)
    }

    fn server_state(
        &self,
        conn: &mut C,
    ) -> impl Future<Output = Result<Option<ServerState>, sqlx::Error>> + Send {
        conn.server_state()
    }

    fn replay_lag(
        &self,
        conn: &mut C,
    ) -> impl Future<Output = Result<Option<std::time::Duration>, sqlx::Error>> + Send {
        conn.replay_lag()
    }

    fn check_in(&self, conn: &mut C) -> CheckIn {
        if conn.is_in_transaction() || conn.should_flush() {
            CheckIn::Reset
        } else {
            CheckIn::Reuse
        }
    }

    async fn reset(&self, conn: &mut C) -> Result<(), sqlx::Error> {
        // A dropped sqlx Transaction queues its ROLLBACK; flush sends it.
        conn.flush().await?;
        if conn.is_in_transaction() {
            return Err(sqlx::Error::Protocol(
                "connection still inside a transaction after reset".into(),
            ));
        }
        Ok(())
    }

    async fn close(&self, conn: C) {
        // Best effort: the pool drops the connection if this stalls.
        let _ = conn.close().await;
    }

    fn is_fatal(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(e) = e.downcast_ref::<sqlx::Error>() {
                return matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::Protocol(_)
                        | sqlx::Error::WorkerCrashed
                );
            }
            next = e.source();
        }
        false
    }

    fn is_exhausted(&self, error: &sqlx::Error) -> bool {
        is_too_many_connections(error)
    }

    fn endpoint(&self) -> Option<String> {
        let url = self.options.to_url_lossy();
        let path = url.path().trim_start_matches('/');
        Some(match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}/{path}"),
            (Some(host), None) => format!("{host}/{path}"),
            (None, _) => path.to_owned(),
        })
    }
}
