//! What keel's cross-crate tests share: where the databases are.

/// The shared PostgreSQL of these machines (trust auth).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
