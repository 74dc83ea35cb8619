//! The demo's operations, written once per backend (placeholders and
//! upserts differ), each run through the database's stack. With chaos on,
//! an operation may fail inside the stack with a refused connection, as a
//! database that went away does, so retries and the breaker are seen at
//! work.

use std::future::Future;
use std::sync::Arc;

use keel::Database;
use keel::pool::SqlxConnection;
use keel::pool::op::BoxFuture;
use keel::sqlx::{self, MySqlConnection, PgConnection, SqliteConnection};

use super::chaos::Chaos;

/// The accounts the workload reads and moves money between.
pub(crate) const ACCOUNTS: i64 = 100;

/// The demo's operations on one backend.
pub(crate) trait Workload: SqlxConnection + Sized + 'static {
    /// Creates the table and its rows (idempotent).
    fn setup(db: &Database<Self>) -> impl Future<Output = Result<(), keel::Error>> + Send;
    /// Reads one balance.
    fn read(
        db: &Database<Self>,
        chaos: &Arc<Chaos>,
        id: i64,
    ) -> impl Future<Output = Result<i64, keel::Error>> + Send;
    /// Adds to one balance.
    fn write(
        db: &Database<Self>,
        chaos: &Arc<Chaos>,
        id: i64,
        delta: i64,
    ) -> impl Future<Output = Result<(), keel::Error>> + Send;
    /// Moves an amount between two accounts in one transaction.
    fn transfer(
        db: &Database<Self>,
        chaos: &Arc<Chaos>,
        from: i64,
        to: i64,
        amount: i64,
    ) -> impl Future<Output = Result<(), keel::Error>> + Send;
}

macro_rules! workload {
    ($conn:ty, prepare: [$($prepare:literal),*], create: $create:literal, seed: $seed:literal, select: $select:literal, update: $update:literal) => {
        impl Workload for $conn {
            async fn setup(db: &Database<Self>) -> Result<(), keel::Error> {
                $(db.execute(|| sqlx::query($prepare)).await?;)*
                db.execute(|| sqlx::query($create)).await?;
                for id in 1..=ACCOUNTS {
                    db.execute(move || sqlx::query($seed).bind(id)).await?;
                }
                Ok(())
            }

            async fn read(db: &Database<Self>, chaos: &Arc<Chaos>, id: i64) -> Result<i64, keel::Error> {
                let chaos = Arc::clone(chaos);
                db.with_connection(move |conn: &mut Self| -> BoxFuture<'_, Result<i64, sqlx::Error>> {
                    let chaos = Arc::clone(&chaos);
                    Box::pin(async move {
                        chaos.strike()?;
                        let balance: i64 = sqlx::query_scalar($select).bind(id).fetch_one(&mut *conn).await?;
                        Ok(balance)
                    })
                })
                .await
            }

            async fn write(db: &Database<Self>, chaos: &Arc<Chaos>, id: i64, delta: i64) -> Result<(), keel::Error> {
                let chaos = Arc::clone(chaos);
                db.with_connection(move |conn: &mut Self| -> BoxFuture<'_, Result<(), sqlx::Error>> {
                    let chaos = Arc::clone(&chaos);
                    Box::pin(async move {
                        chaos.strike()?;
                        sqlx::query($update).bind(delta).bind(id).execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn transfer(
                db: &Database<Self>,
                chaos: &Arc<Chaos>,
                from: i64,
                to: i64,
                amount: i64,
            ) -> Result<(), keel::Error> {
                let chaos = Arc::clone(chaos);
                db.transaction(move |tx: &mut Self| -> BoxFuture<'_, Result<(), sqlx::Error>> {
                    let chaos = Arc::clone(&chaos);
                    Box::pin(async move {
                        chaos.strike()?;
                        sqlx::query($update).bind(-amount).bind(from).execute(&mut *tx).await?;
                        sqlx::query($update).bind(amount).bind(to).execute(&mut *tx).await?;
                        Ok(())
                    })
                })
                .await
            }
        }
    };
}

// WAL lets readers run beside the one writer (the mode stays with the file).
workload!(SqliteConnection,
    prepare: ["PRAGMA journal_mode = WAL"],
    create: "CREATE TABLE IF NOT EXISTS keel_demo_accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
    seed: "INSERT INTO keel_demo_accounts (id, balance) VALUES ($1, 1000) ON CONFLICT (id) DO NOTHING",
    select: "SELECT balance FROM keel_demo_accounts WHERE id = $1",
    update: "UPDATE keel_demo_accounts SET balance = balance + $1 WHERE id = $2");

workload!(PgConnection,
    prepare: [],
    create: "CREATE TABLE IF NOT EXISTS keel_demo_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)",
    seed: "INSERT INTO keel_demo_accounts (id, balance) VALUES ($1, 1000) ON CONFLICT (id) DO NOTHING",
    select: "SELECT balance FROM keel_demo_accounts WHERE id = $1",
    update: "UPDATE keel_demo_accounts SET balance = balance + $1 WHERE id = $2");

workload!(MySqlConnection,
    prepare: [],
    create: "CREATE TABLE IF NOT EXISTS keel_demo_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)",
    seed: "INSERT IGNORE INTO keel_demo_accounts (id, balance) VALUES (?, 1000)",
    select: "SELECT balance FROM keel_demo_accounts WHERE id = ?",
    update: "UPDATE keel_demo_accounts SET balance = balance + ? WHERE id = ?");
