//! Everything sqlx: the manager over any sqlx connection, statements as
//! operations, and database URLs. Named `driver` because the crate root
//! re-exports sqlx itself as `keel_pool_core::sqlx`.

#[cfg(feature = "cluster")]
mod cluster_url;
mod manager;
pub(crate) mod statement;
mod url;

#[cfg(feature = "cluster")]
pub use cluster_url::ClusterUrl;
#[cfg(feature = "mysql")]
pub use manager::MySqlManager;
#[cfg(feature = "postgres")]
pub use manager::PgManager;
#[cfg(feature = "sqlite")]
pub use manager::SqliteManager;
pub use manager::{SqlxConnection, SqlxManager, is_too_many_connections};
pub use url::{Backend, DatabaseUrl, UrlError, UrlPart};
