//! One sqlx statement as an [`Operation`]: `execute`, `fetch_one`,
//! `fetch_optional` and `fetch_all` over a factory that builds the query,
//! since sqlx queries are not `Clone` and retry must re-issue them.

use std::marker::PhantomData;
use std::time::Duration;

use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Database, Executor, FromRow, IntoArguments};

use crate::op::{BoxError, BoxFuture, Operation};

/// A query that can fetch rows on a connection of type `C`: sqlx's
/// `query`, `query_as` and `query_scalar` builders.
pub trait Fetch<C>: Send + 'static {
    /// What one row becomes: the driver's row, a `FromRow` type or a scalar.
    type Row: Send + 'static;

    /// Every row.
    fn fetch_all(self, conn: &mut C) -> BoxFuture<'_, Result<Vec<Self::Row>, sqlx::Error>>;

    /// The first row, if any.
    fn fetch_optional(self, conn: &mut C) -> BoxFuture<'_, Result<Option<Self::Row>, sqlx::Error>>;
}

impl<C, DB, A> Fetch<C> for Query<'static, DB, A>
where
    C: Send,
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    A: IntoArguments<DB> + Send + 'static,
{
    type Row = DB::Row;

    fn fetch_all(self, conn: &mut C) -> BoxFuture<'_, Result<Vec<DB::Row>, sqlx::Error>> {
        Box::pin(Query::fetch_all(self, conn))
    }

    fn fetch_optional(self, conn: &mut C) -> BoxFuture<'_, Result<Option<DB::Row>, sqlx::Error>> {
        Box::pin(Query::fetch_optional(self, conn))
    }
}

impl<C, DB, O, A> Fetch<C> for QueryAs<'static, DB, O, A>
where
    C: Send,
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    O: for<'r> FromRow<'r, DB::Row> + Send + Unpin + 'static,
    A: IntoArguments<DB> + Send + 'static,
{
    type Row = O;

    fn fetch_all(self, conn: &mut C) -> BoxFuture<'_, Result<Vec<O>, sqlx::Error>> {
        Box::pin(QueryAs::fetch_all(self, conn))
    }

    fn fetch_optional(self, conn: &mut C) -> BoxFuture<'_, Result<Option<O>, sqlx::Error>> {
        Box::pin(QueryAs::fetch_optional(self, conn))
    }
}

impl<C, DB, O, A> Fetch<C> for QueryScalar<'static, DB, O, A>
where
    C: Send,
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    O: Send + Unpin + 'static,
    (O,): for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    A: IntoArguments<DB> + Send + 'static,
{
    type Row = O;

    fn fetch_all(self, conn: &mut C) -> BoxFuture<'_, Result<Vec<O>, sqlx::Error>> {
        Box::pin(QueryScalar::fetch_all(self, conn))
    }

    fn fetch_optional(self, conn: &mut C) -> BoxFuture<'_, Result<Option<O>, sqlx::Error>> {
        Box::pin(QueryScalar::fetch_optional(self, conn))
    }
}

/// What a [`Statement`] does with its query.
pub mod kind {
    /// Run it and report rows affected ([`execute`](super::execute)).
    #[derive(Debug)]
    pub enum Execute {}
    /// Every row ([`fetch_all`](super::fetch_all)).
    #[derive(Debug)]
    pub enum All {}
    /// Exactly one row ([`fetch_one`](super::fetch_one)).
    #[derive(Debug)]
    pub enum One {}
    /// At most one row ([`fetch_optional`](super::fetch_optional)).
    #[derive(Debug)]
    pub enum Optional {}
}

/// One statement, built afresh by `make` for each run: see [`execute`],
/// [`fetch_one`], [`fetch_optional`] and [`fetch_all`].
#[derive(Debug)]
pub struct Statement<F, K> {
    make: F,
    timeout: Option<Duration>,
    kind: PhantomData<fn() -> K>,
}

impl<F: Clone, K> Clone for Statement<F, K> {
    fn clone(&self) -> Self {
        Self {
            make: self.make.clone(),
            timeout: self.timeout,
            kind: PhantomData,
        }
    }
}

impl<F, K> Statement<F, K> {
    fn new(make: F) -> Self {
        Self {
            make,
            timeout: None,
            kind: PhantomData,
        }
    }

    /// Gives this statement its own deadline.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }
}

/// Runs a statement and returns the driver's result (rows affected).
///
/// ```no_run
/// use keel_pool_core::{DatabaseUrl, PgManager, Pool, op};
/// use tower::ServiceExt;
///
/// # async fn demo(pool: Pool<PgManager>) -> Result<(), op::BoxError> {
/// let id = 7_i64;
/// let done = pool
///     .service()
///     .oneshot(op::execute(move || {
///         sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id)
///     }))
///     .await?;
/// println!("{} deleted", done.rows_affected());
/// # Ok(()) }
/// ```
pub fn execute<F>(make: F) -> Statement<F, kind::Execute> {
    Statement::new(make)
}

/// Fetches every row of a query (`query`, `query_as` or `query_scalar`).
///
/// ```no_run
/// use keel_pool_core::{PgManager, Pool, op};
/// use tower::ServiceExt;
///
/// # async fn demo(pool: Pool<PgManager>) -> Result<(), op::BoxError> {
/// let names: Vec<String> = pool
///     .service()
///     .oneshot(op::fetch_all(|| sqlx::query_scalar("SELECT name FROM users")))
///     .await?;
/// # Ok(()) }
/// ```
pub fn fetch_all<F>(make: F) -> Statement<F, kind::All> {
    Statement::new(make)
}

/// Fetches exactly one row; no row is sqlx's `RowNotFound`.
///
/// ```no_run
/// use keel_pool_core::{PgManager, Pool, op};
/// use tower::ServiceExt;
///
/// # async fn demo(pool: Pool<PgManager>) -> Result<(), op::BoxError> {
/// let (id, name): (i64, String) = pool
///     .service()
///     .oneshot(op::fetch_one(|| {
///         sqlx::query_as("SELECT id, name FROM users WHERE id = $1").bind(7_i64)
///     }))
///     .await?;
/// # Ok(()) }
/// ```
pub fn fetch_one<F>(make: F) -> Statement<F, kind::One> {
    Statement::new(make)
}

/// Fetches the first row, if there is one.
pub fn fetch_optional<F>(make: F) -> Statement<F, kind::Optional> {
    Statement::new(make)
}

impl<C, F, DB, A> Operation<C> for Statement<F, kind::Execute>
where
    C: Send,
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    F: Fn() -> Query<'static, DB, A> + Clone + Send + 'static,
    A: IntoArguments<DB> + Send + 'static,
{
    type Output = DB::QueryResult;

    fn run(self, conn: &mut C) -> BoxFuture<'_, Result<DB::QueryResult, BoxError>> {
        let query = (self.make)();
        Box::pin(async move { Ok(query.execute(conn).await?) })
    }

    fn command_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

macro_rules! fetch_operation {
    ($kind:ident, $output:ty, |$query:ident, $conn:ident| $body:expr) => {
        impl<C, F, Q> Operation<C> for Statement<F, kind::$kind>
        where
            C: Send,
            F: Fn() -> Q + Clone + Send + 'static,
            Q: Fetch<C>,
        {
            type Output = $output;

            fn run(self, $conn: &mut C) -> BoxFuture<'_, Result<$output, BoxError>> {
                let $query = (self.make)();
                Box::pin(async move { Ok($body.await?) })
            }

            fn command_timeout(&self) -> Option<Duration> {
                self.timeout
            }
        }
    };
}

fetch_operation!(All, Vec<Q::Row>, |query, conn| query.fetch_all(conn));
fetch_operation!(Optional, Option<Q::Row>, |query, conn| query
    .fetch_optional(conn));
fetch_operation!(One, Q::Row, |query, conn| async move {
    query
        .fetch_optional(conn)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
});
