//! [`Databases`]: named databases started, found and stopped by name, for
//! services that talk to several (the Erlang reference's `start_pool`).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use keel_health::Report;
use keel_pool_core::SqlxConnection;
use keel_pool_core::op::BoxFuture;

use crate::{ConfigError, Database, DatabaseConfig, Error, MetricsSnapshot};

/// A registry of named [`Database`]s of any backend. Clones share it.
///
/// ```no_run
/// use keel::{Databases, DatabaseConfig, PgDatabase, SqliteDatabase};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let databases = Databases::new();
/// databases
///     .start::<keel::sqlx::PgConnection>(DatabaseConfig::new("postgres://app@db/orders".parse()?).with_name("orders"))
///     .await?;
/// databases
///     .start::<keel::sqlx::SqliteConnection>(DatabaseConfig::new("sqlite::memory:".parse()?).with_name("cache"))
///     .await?;
/// let orders: PgDatabase = databases.get("orders").expect("started above");
/// databases.stop("cache", std::time::Duration::from_secs(5)).await?;
/// # let _ = orders;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Databases {
    entries: Arc<RwLock<BTreeMap<String, Entry>>>,
}

struct Entry {
    /// The `Database<C>`, for typed `get`.
    typed: Box<dyn Any + Send + Sync>,
    managed: Arc<dyn Managed>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.managed.name())
    }
}

/// What the registry does with a database whatever its backend.
trait Managed: Send + Sync {
    fn name(&self) -> &str;
    fn health(&self) -> Report;
    fn metrics_snapshot(&self) -> MetricsSnapshot;
    fn shutdown(&self, deadline: Duration) -> BoxFuture<'_, Result<(), Error>>;
}

impl<C: SqlxConnection + 'static> Managed for Database<C> {
    fn name(&self) -> &str {
        Database::name(self)
    }

    fn health(&self) -> Report {
        Database::health(self)
    }

    fn metrics_snapshot(&self) -> MetricsSnapshot {
        Database::metrics_snapshot(self)
    }

    fn shutdown(&self, deadline: Duration) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(Database::shutdown(self, deadline))
    }
}

impl Databases {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connects a database ([`Database::connect`]) and registers it under
    /// its config's name.
    ///
    /// # Errors
    /// [`Phase::Config`](crate::Phase::Config) when the name is taken;
    /// whatever `connect` fails with.
    pub async fn start<C: SqlxConnection + 'static>(
        &self,
        config: DatabaseConfig,
    ) -> Result<Database<C>, Error> {
        let name = config.name.clone();
        let taken = || {
            Error::config(
                &name,
                ConfigError::new(
                    "name",
                    format!("a database named `{name}` is already started"),
                ),
            )
        };
        if self.read().contains_key(&name) {
            return Err(taken());
        }
        let db = Database::<C>::connect(config).await?;
        let inserted = {
            let mut entries = self.write();
            let free = !entries.contains_key(&name);
            if free {
                let entry = Entry {
                    typed: Box::new(db.clone()),
                    managed: Arc::new(db.clone()),
                };
                entries.insert(name.clone(), entry);
            }
            free
        };
        if !inserted {
            // Started meanwhile by another task: this one goes.
            let _ = db.shutdown(Duration::ZERO).await;
            return Err(taken());
        }
        Ok(db)
    }

    /// The database named `name`, if it was started with backend `C`.
    pub fn get<C: SqlxConnection + 'static>(&self, name: &str) -> Option<Database<C>> {
        self.read()
            .get(name)
            .and_then(|e| e.typed.downcast_ref::<Database<C>>())
            .cloned()
    }

    /// Shuts the database down ([`Database::shutdown`]) and forgets it; the
    /// others keep serving.
    ///
    /// # Errors
    /// [`Phase::Config`](crate::Phase::Config) for an unknown name; what
    /// `shutdown` fails with (the database is forgotten either way).
    pub async fn stop(&self, name: &str, deadline: Duration) -> Result<(), Error> {
        let entry = self.write().remove(name).ok_or_else(|| {
            Error::config(
                name,
                ConfigError::new("name", format!("no database named `{name}` is started")),
            )
        })?;
        entry.managed.shutdown(deadline).await
    }

    /// The names of the started databases, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Each database's last health report, by name.
    pub fn health(&self) -> Vec<(String, Report)> {
        self.managed()
            .into_iter()
            .map(|m| (m.name().to_owned(), m.health()))
            .collect()
    }

    /// Each database's metrics snapshot, by name.
    pub fn metrics_snapshots(&self) -> Vec<(String, MetricsSnapshot)> {
        self.managed()
            .into_iter()
            .map(|m| (m.name().to_owned(), m.metrics_snapshot()))
            .collect()
    }

    /// Stops every database, each within `deadline`.
    ///
    /// # Errors
    /// The first error a shutdown gave (all are shut down either way).
    pub async fn stop_all(&self, deadline: Duration) -> Result<(), Error> {
        let entries: Vec<Entry> = std::mem::take(&mut *self.write()).into_values().collect();
        let mut first = Ok(());
        for entry in entries {
            let result = entry.managed.shutdown(deadline).await;
            if first.is_ok() {
                first = result;
            }
        }
        first
    }

    fn managed(&self) -> Vec<Arc<dyn Managed>> {
        self.read()
            .values()
            .map(|e| Arc::clone(&e.managed))
            .collect()
    }
}
