//! The pool's background task: retires idle connections past their idle
//! timeout or lifetime, keeps `min_idle` connections open, reports
//! suspected leaks and keeps the coarse clock fresh. It holds the pool
//! weakly and stops when the pool is dropped or closed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::clock::millis;
use crate::manager::Manager;
use crate::observer::{CloseReason, Event};
use crate::shared::{Shared, lock};

pub(crate) fn spawn<M: Manager>(shared: &Arc<Shared<M>>) {
    let weak = Arc::downgrade(shared);
    let tick = shared.config.tick();
    drop(shared.runtime.spawn(run(weak, tick)));
}

async fn run<M: Manager>(pool: Weak<Shared<M>>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(shared) = pool.upgrade() else { return };
        if shared.is_closed() {
            return;
        }
        shared.maintain().await;
    }
}

impl<M: Manager> Shared<M> {
    /// One round of maintenance.
    pub(crate) async fn maintain(self: &Arc<Self>) {
        let now = self.clock.refresh();
        let idle_timeout = self.config.idle_timeout.map(millis);
        let min_idle = self.config.min_idle;
        let retired = self.take_idle_where(|conn, remaining| {
            let reason = self.retire_reason(conn, now).or_else(|| {
                let idle_for = now.saturating_sub(conn.idle_since_ms);
                let expired = idle_timeout.is_some_and(|limit| idle_for >= limit);
                (expired && remaining >= min_idle).then_some(CloseReason::Idle)
            })?;
            // A connection that closes holds a slot until it is gone, so
            // checkouts cannot open its replacement meanwhile (the server
            // would hold more than the pool allows). Idle connections never
            // outnumber free slots; without one, it waits for the next tick.
            let permit = self.permits.try_acquire().ok()?;
            permit.forget();
            Some(reason)
        });
        // Closed side by side, each in its own task, so one slow close
        // neither delays the others nor stalls maintenance.
        for (conn, reason) in retired {
            let shared = Arc::clone(self);
            drop(self.runtime.spawn(async move {
                shared.close_gracefully(conn, reason).await;
                shared.return_permit();
            }));
        }
        self.report_leaks(now);
        // A failure is already reported as an event; the next tick retries.
        let _ = self.fill_idle().await;
    }

    fn report_leaks(&self, now: u64) {
        let (Some(checkouts), Some(threshold)) = (&self.checkouts, self.config.leak_threshold)
        else {
            return;
        };
        let threshold = millis(threshold);
        let mut suspects = Vec::new();
        for (id, checkout) in lock(checkouts).iter_mut() {
            let held = now.saturating_sub(checkout.since_ms);
            if !checkout.reported && held >= threshold {
                checkout.reported = true;
                suspects.push((*id, held, checkout.at));
            }
        }
        for (id, held, acquired_at) in suspects {
            self.observers.emit(&Event::LeakSuspected {
                name: &self.slow.name,
                id,
                held: Duration::from_millis(held),
                acquired_at,
            });
        }
    }
}
