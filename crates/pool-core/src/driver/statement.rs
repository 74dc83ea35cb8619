//! One sqlx statement as an [`Operation`]: `execute`, `fetch_one`,
//! `fetch_optional` and `fetch_all` over a factory that builds the query,
//! since sqlx queries are not `Clone` and retry must re-issue them.
//!
//! The factory and its query type are erased when the statement is made
//! (one shared allocation): a [`Statement`] names only its connection and
//! output, so a call through a service inside `tokio::spawn` compiles
//! without boxing (rustc cannot prove a future `Send` when it holds a
//! query type bound to `'static` through a higher-ranked impl).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Database, Executor, FromRow, IntoArguments};

use crate::op::{BoxError, BoxFuture, Operation};

/// A query that can fetch rows on a connection of type `C`: sqlx's
/// `query`, `query_as` and `query_scalar` builders.
pub trait Fetch<C>: Send {
    /// What one row becomes: the driver's row, a `FromRow` type or a scalar.
    type Row: Send + 'static;

    /// Every row.
    fn fetch_all<'c>(self, conn: &'c mut C) -> BoxFuture<'c, Result<Vec<Self::Row>, sqlx::Error>>
    where
        Self: 'c;

    /// The first row, if any.
    fn fetch_optional<'c>(
        self,
        conn: &'c mut C,
    ) -> BoxFuture<'c, Result<Option<Self::Row>, sqlx::Error>>
    where
        Self: 'c;
}

macro_rules! fetch_impl {
    ($query:ident [$($param:ident),*], $row:ty, $($bound:tt)*) => {
        impl<'q, C, DB, $($param,)* A> Fetch<C> for $query<'q, DB, $($param,)* A>
        where
            C: Send,
            DB: Database,
            for<'c> &'c mut C: Executor<'c, Database = DB>,
            A: IntoArguments<DB> + Send + 'q,
            $($bound)*
        {
            type Row = $row;

            fn fetch_all<'c>(self, conn: &'c mut C) -> BoxFuture<'c, Result<Vec<$row>, sqlx::Error>>
            where
                Self: 'c,
            {
                Box::pin($query::fetch_all(self, conn))
            }

            fn fetch_optional<'c>(
                self,
                conn: &'c mut C,
            ) -> BoxFuture<'c, Result<Option<$row>, sqlx::Error>>
            where
                Self: 'c,
            {
                Box::pin($query::fetch_optional(self, conn))
            }
        }
    };
}

fetch_impl! { Query [], DB::Row, }
fetch_impl! { QueryAs [O], O, O: for<'r> FromRow<'r, DB::Row> + Send + Unpin + 'static, }
fetch_impl! {
    QueryScalar [O], O,
    O: Send + Unpin + 'static,
    (O,): for<'r> FromRow<'r, DB::Row> + Send + Unpin,
}

/// Runs a statement on a connection: the factory and its query, erased.
type Run<C, T> = dyn for<'c> Fn(&'c mut C) -> BoxFuture<'c, Result<T, sqlx::Error>> + Send + Sync;

/// One statement on a connection of type `C` producing `T`, built afresh
/// for each run: see [`execute`], [`fetch_one`], [`fetch_optional`] and
/// [`fetch_all`]. Cloning shares the factory.
pub struct Statement<C, T> {
    run: Arc<Run<C, T>>,
    timeout: Option<Duration>,
}

impl<C, T> Clone for Statement<C, T> {
    fn clone(&self) -> Self {
        Self {
            run: Arc::clone(&self.run),
            timeout: self.timeout,
        }
    }
}

impl<C, T> fmt::Debug for Statement<C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Statement")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<C, T> Statement<C, T> {
    fn new(run: Arc<Run<C, T>>) -> Self {
        Self { run, timeout: None }
    }

    /// Gives this statement its own deadline.
    #[must_use]
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }
}

/// Runs a statement and returns the driver's result (rows affected).
///
/// ```no_run
/// use keel_pool_core::{PgManager, Pool, op, sqlx};
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
pub fn execute<C, F, DB, A>(make: F) -> Statement<C, DB::QueryResult>
where
    C: Send,
    DB: Database,
    for<'c> &'c mut C: Executor<'c, Database = DB>,
    F: Fn() -> Query<'static, DB, A> + Send + Sync + 'static,
    A: IntoArguments<DB> + Send + 'static,
{
    Statement::new(Arc::new(move |conn| Box::pin(make().execute(conn))))
}

/// Fetches every row of a query (`query`, `query_as` or `query_scalar`).
///
/// ```no_run
/// use keel_pool_core::{PgManager, Pool, op, sqlx};
/// use tower::ServiceExt;
///
/// # async fn demo(pool: Pool<PgManager>) -> Result<(), op::BoxError> {
/// let names: Vec<String> = pool
///     .service()
///     .oneshot(op::fetch_all(|| sqlx::query_scalar("SELECT name FROM users")))
///     .await?;
/// # Ok(()) }
/// ```
pub fn fetch_all<C, F, Q>(make: F) -> Statement<C, Vec<Q::Row>>
where
    F: Fn() -> Q + Send + Sync + 'static,
    Q: Fetch<C> + 'static,
{
    Statement::new(Arc::new(move |conn| make().fetch_all(conn)))
}

/// Fetches exactly one row; no row is sqlx's `RowNotFound`.
///
/// ```no_run
/// use keel_pool_core::{PgManager, Pool, op, sqlx};
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
pub fn fetch_one<C, F, Q>(make: F) -> Statement<C, Q::Row>
where
    F: Fn() -> Q + Send + Sync + 'static,
    Q: Fetch<C> + 'static,
{
    Statement::new(Arc::new(move |conn| {
        let query = make().fetch_optional(conn);
        Box::pin(async move { query.await?.ok_or(sqlx::Error::RowNotFound) })
    }))
}

/// Fetches the first row, if there is one.
pub fn fetch_optional<C, F, Q>(make: F) -> Statement<C, Option<Q::Row>>
where
    F: Fn() -> Q + Send + Sync + 'static,
    Q: Fetch<C> + 'static,
{
    Statement::new(Arc::new(move |conn| make().fetch_optional(conn)))
}

impl<C, T> Operation<C> for Statement<C, T>
where
    C: Send + 'static,
    T: Send + 'static,
{
    type Output = T;

    fn run(self, conn: &mut C) -> BoxFuture<'_, Result<T, BoxError>> {
        let query = (self.run)(conn);
        Box::pin(async move { Ok(query.await?) })
    }

    fn command_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}
