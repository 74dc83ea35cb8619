//! Scenarios run the same way against PostgreSQL and MariaDB; each test
//! file supplies what differs (the manager, how to read a session's id,
//! the statement that runs for long).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support fails loudly"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_pool_core::op::{BoxFuture, CommandTimeout, Operation};
use keel_pool_core::{Event, Manager, Pool, PoolError};
use tower::ServiceExt;

use super::eventually;

/// Reads the server's id of the session behind a connection.
pub(crate) type SessionId<C> = for<'c> fn(&'c mut C) -> BoxFuture<'c, i64>;

/// A server that refuses the third connection (a per-user limit of 2):
/// the checkout it refuses waits, and gets the connection released
/// meanwhile instead of the error (sqlx#2848).
pub(crate) async fn a_refused_waiter_gets_the_released_connection<M: Manager>(
    limited: M,
    session_id: SessionId<M::Connection>,
) {
    let refused = Arc::new(tokio::sync::Notify::new());
    let seen = refused.clone();
    let pool = Pool::builder(limited)
        .max_size(4)
        .wait_timeout(Duration::from_secs(10))
        .observer(move |e: &Event<'_>| {
            if matches!(e, Event::ConnectFailed { .. }) {
                seen.notify_one();
            }
        })
        .build()
        .await
        .unwrap();
    let mut a = pool.get().await.unwrap();
    let a_id = session_id(&mut a).await;
    let _b = pool.get().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut c = pool.get().await?;
            Ok::<_, PoolError<M::Error>>(session_id(&mut c).await)
        })
    };
    refused.notified().await;
    drop(a);
    let got = waiter
        .await
        .unwrap()
        .unwrap_or_else(|_| panic!("the waiter got the error, not the released connection"));
    assert_eq!(got, a_id);
}

/// `long` outlives its 300 ms command timeout: the caller gets a
/// `CommandTimeout`, the server stops the statement (`running` counts the
/// sessions still running it) and the interrupted connection is closed.
pub(crate) async fn the_command_timeout_stops_the_statement_on_the_server<M, O, R>(
    pool: &Pool<M>,
    long: O,
    running: impl Fn() -> R,
) where
    M: Manager,
    O: Operation<M::Connection>,
    R: Future<Output = i64>,
{
    let Err(err) = pool.service().oneshot(long).await else {
        panic!("the statement outlived its timeout and succeeded");
    };
    let timeout = err
        .downcast_ref::<CommandTimeout>()
        .expect("a CommandTimeout");
    assert_eq!(timeout.after, Duration::from_millis(300));
    eventually("the server stops the statement", || async {
        running().await == 0
    })
    .await;
    eventually("the interrupted connection is closed", || async {
        pool.stats().closed.broken == 1
    })
    .await;
}
