//! The tables' migrations: numbered, applied in order, each once, recorded
//! in the schema table; applied under an advisory lock so instances that
//! start together migrate once.

#[cfg(feature = "postgres")]
use keel_pool_core::sqlx::{self, AssertSqlSafe, Connection as _, PgConnection};

use super::SqlConfig;
use crate::error::StoreError;

/// What is wrong with the tables a store was pointed at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// No schema table: the migrations never ran there.
    #[error("no session tables at {table}: run the store's migrate() first")]
    Missing {
        /// The schema table looked for.
        table: String,
    },
    /// An older schema than this code needs.
    #[error(
        "session tables at {table} are at version {found}, this code needs {known}: run migrate()"
    )]
    Behind {
        /// The schema table.
        table: String,
        /// Its version.
        found: i32,
        /// The version this code knows.
        known: i32,
    },
    /// A newer schema than this code knows: a newer release migrated it.
    #[error(
        "session tables at {table} are at version {found}, newer than the {known} this code knows: run a release that knows it"
    )]
    TooNew {
        /// The schema table.
        table: String,
        /// Its version.
        found: i32,
        /// The version this code knows.
        known: i32,
    },
}

/// The statements of each migration, in order; `{sessions}`, `{journal}`
/// and `{idx_*}` are replaced by the configured names.
#[cfg(feature = "postgres")]
const MIGRATIONS: &[&[&str]] = &[&[
    "CREATE TABLE {sessions} (
        id BYTEA PRIMARY KEY,
        client_id TEXT NOT NULL,
        transport TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        last_activity BIGINT NOT NULL,
        ttl_ms BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        journal_seq BIGINT NOT NULL DEFAULT 0,
        data JSONB NOT NULL
    )",
    "CREATE INDEX {idx_client} ON {sessions} (client_id, created_at)",
    "CREATE INDEX {idx_expiry} ON {sessions} (expires_at)",
    "CREATE TABLE {journal} (
        session_id BYTEA NOT NULL REFERENCES {sessions} (id) ON DELETE CASCADE,
        seq BIGINT NOT NULL,
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        status SMALLINT NOT NULL,
        PRIMARY KEY (session_id, seq)
    )",
]];

/// The schema version this code reads and writes.
pub(crate) const KNOWN: i32 = 1;

pub(crate) fn expand(statement: &str, sql: &SqlConfig) -> String {
    statement
        .replace("{sessions}", &sql.table("sessions"))
        .replace("{journal}", &sql.table("session_journal"))
        .replace("{idx_client}", &sql.local("sessions_client"))
        .replace("{idx_expiry}", &sql.local("sessions_expiry"))
}

/// Applies the migrations not yet applied; returns the version reached.
#[cfg(feature = "postgres")]
pub(crate) async fn migrate(conn: &mut PgConnection, sql: &SqlConfig) -> Result<i32, StoreError> {
    let mut tx = conn.begin().await.map_err(backend)?;
    let result = migrate_in(&mut tx, sql).await;
    // Rolled back now on failure: a dropped transaction would keep the
    // advisory lock until the pool next resets the connection.
    match result {
        Ok(version) => tx.commit().await.map_err(backend).map(|()| version),
        Err(e) => {
            tx.rollback().await.map_err(backend)?;
            Err(e)
        }
    }
}

#[cfg(feature = "postgres")]
async fn migrate_in(tx: &mut PgConnection, sql: &SqlConfig) -> Result<i32, StoreError> {
    let table = sql.table("session_schema");
    // One migrator at a time per table set, from the first statement; the
    // lock ends with the transaction.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(&table)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    // Under the lock: concurrent `CREATE SCHEMA IF NOT EXISTS` can still
    // collide in the catalog.
    if let Some(schema) = &sql.schema {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )))
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    let found: Option<i32> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(version) FROM {table}")))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
    for (version, statements) in pending(&table, found, MIGRATIONS)? {
        for statement in statements {
            sqlx::query(AssertSqlSafe(expand(statement, sql)))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (version) VALUES ($1)"
        )))
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    Ok(KNOWN)
}

/// Checks the tables are at the version this code knows.
#[cfg(feature = "postgres")]
pub(crate) async fn check(conn: &mut PgConnection, sql: &SqlConfig) -> Result<(), StoreError> {
    let table = sql.table("session_schema");
    let found: Option<i32> =
        match sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(version) FROM {table}")))
            .fetch_one(&mut *conn)
            .await
        {
            Ok(found) => found,
            // 42P01 undefined_table, 3F000 invalid_schema_name.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P01" | "3F000")) =>
            {
                return Err(SchemaError::Missing { table }.into());
            }
            Err(e) => return Err(backend(e)),
        };
    verdict(table, found)
}

/// The tables' version `found` (none: no migration applied) against the
/// version this code knows.
pub(crate) fn verdict(table: String, found: Option<i32>) -> Result<(), StoreError> {
    match found.unwrap_or(0) {
        KNOWN => Ok(()),
        found if found > KNOWN => Err(SchemaError::TooNew {
            table,
            found,
            known: KNOWN,
        }
        .into()),
        found => Err(SchemaError::Behind {
            table,
            found,
            known: KNOWN,
        }
        .into()),
    }
}

/// The migrations not yet applied to tables at version `found` (none: no
/// migration applied), numbered from 1; tables newer than this code are
/// refused.
pub(crate) fn pending<'m>(
    table: &str,
    found: Option<i32>,
    migrations: &'m [&'m [&'m str]],
) -> Result<impl Iterator<Item = (i32, &'m [&'m str])>, StoreError> {
    let found = found.unwrap_or(0);
    if found > KNOWN {
        return Err(SchemaError::TooNew {
            table: table.to_owned(),
            found,
            known: KNOWN,
        }
        .into());
    }
    Ok((1..)
        .zip(migrations.iter().copied())
        .skip_while(move |(v, _)| *v <= found))
}

/// A database error as the store reports it.
pub(crate) fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Backend(e.into())
}
