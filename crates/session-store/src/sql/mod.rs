//! The SQL backends (features `postgres` and `mysql`): sessions in a
//! table of a PostgreSQL, MySQL or MariaDB database the service already
//! runs, through a keel-pool-core pool, shared by every instance of the
//! service.
//!
//! - One row per session (primary key on the 16-byte id; indexes on the
//!   client id and on the expiry time), its data as JSONB; the journal in a
//!   table of its own whose rows die with their session (`ON DELETE
//!   CASCADE`). The tables come from versioned migrations the backend ships
//!   and runs on request ([`PgStore::migrate`]); a store refuses to start
//!   on a schema it does not know (missing, behind, or newer). MySQL's DDL
//!   is not transactional: a migration cut off midway is finished by the
//!   next `migrate()` (every statement is `IF NOT EXISTS`).
//! - Compare-and-swap through the version column: `UPDATE … WHERE id = $1
//!   AND version = $2`, so a stale writer gets `Conflict`, never a lost
//!   update. (MySQL has no `UPDATE … RETURNING`: a successful update reads
//!   the row's fixed columns back in a second statement.)
//! - Time is the store's clock, sent with every statement: an expired row
//!   is absent on every read before any cleanup, and a test's manual clock
//!   drives the database as it drives the memory store.
//! - JSONB (and MySQL's JSON) normalise what they store: data read back is compact JSON with
//!   its keys in JSONB's order, equal as JSON to what was written.

mod common;
mod config;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod pg;
mod schema;
mod store;

pub use config::SqlConfig;
#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use pg::PgStore;
pub use schema::SchemaError;
