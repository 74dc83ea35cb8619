//! The recovery probe: while the breaker is open, try a connection now and
//! then, outside the breaker; once one answers a ping, end the open period
//! so the trial calls run at once, rather than after the whole open
//! duration. A database back from a restart serves again within about one
//! probe interval, while an outage that lasts costs one connection attempt
//! per interval.

use std::sync::{Arc, Weak};
use std::time::Duration;

use keel_breaker::State;
use keel_pool_core::{Manager, SqlxConnection};

use super::Inner;

/// How often an open breaker's database is probed (±20 %, so many
/// services do not probe in step).
pub(super) const PROBE_INTERVAL: Duration = Duration::from_millis(500);

pub(super) async fn run<C: SqlxConnection + 'static>(database: Weak<Inner<C>>) {
    loop {
        let jitter = 0.8 + 0.4 * fastrand::f64();
        tokio::time::sleep(PROBE_INTERVAL.mul_f64(jitter)).await;
        let Some(inner) = database.upgrade() else {
            return;
        };
        if inner.gate.is_closed() {
            return;
        }
        if inner.breaker.state() == State::Open && answers(&inner).await {
            tracing::info!(
                database = &*inner.name,
                "the database answers again: the breaker tries it now"
            );
            inner.breaker.end_open_period();
        }
    }
}

/// Whether a connection from the pool answers a ping.
async fn answers<C: SqlxConnection + 'static>(inner: &Arc<Inner<C>>) -> bool {
    let Ok(mut conn) = inner.pool.get().await else {
        return false;
    };
    match inner.pool.manager().validate(&mut conn).await {
        Ok(()) => true,
        Err(_) => {
            conn.discard();
            false
        }
    }
}
