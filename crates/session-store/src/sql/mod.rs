//! The SQL backend (feature `postgres`): sessions in a table of a
//! PostgreSQL database the service already runs, through a keel-pool-core
//! pool, shared by every instance of the service.
//!
//! - One row per session (primary key on the 16-byte id; indexes on the
//!   client id and on the expiry time), its data as JSONB; the journal in a
//!   table of its own whose rows die with their session (`ON DELETE
//!   CASCADE`). The tables come from versioned migrations the backend ships
//!   and runs on request ([`PgStore::migrate`]); a store refuses to start
//!   on a schema it does not know (missing, behind, or newer).
//! - Compare-and-swap through the version column: `UPDATE … WHERE id = $1
//!   AND version = $2`, so a stale writer gets `Conflict`, never a lost
//!   update.
//! - Time is the store's clock, sent with every statement: an expired row
//!   is absent on every read before any cleanup, and a test's manual clock
//!   drives the database as it drives the memory store.
//! - JSONB normalises what it stores: data read back is compact JSON with
//!   its keys in JSONB's order, equal as JSON to what was written.

mod config;
mod pg;
mod schema;

pub use config::SqlConfig;
pub use pg::PgStore;
pub use schema::SchemaError;
