//! The idle connections, in one queue per CPU (up to 8) so that threads
//! checking out and in at once do not queue on one lock.
//!
//! A thread takes from and returns to its own queue first (newest first by
//! default, so the connections it uses stay warm; oldest first in FIFO
//! mode), and takes from the others only when its own is empty. A
//! connection is queued before its permit is returned, and a checkout
//! holds a permit before it looks, so a checkout always finds a connection
//! that was idle when it got its permit.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::config::QueueMode;
use crate::observer::CloseReason;
use crate::shared::{Conn, lock};

/// One queue on its own cache lines.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Shard<C>(Mutex<VecDeque<Conn<C>>>);

#[derive(Debug)]
pub(crate) struct Idle<C> {
    shards: Box<[Shard<C>]>,
    mode: QueueMode,
}

fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .next_power_of_two()
            .min(8)
    })
}

/// This thread's queue: its stats stripe (16 of them, a multiple of the
/// queue count), so one thread-local serves both.
#[inline]
fn home(shards: usize) -> usize {
    crate::stats::stripe() & (shards - 1)
}

impl<C> Idle<C> {
    pub(crate) fn new(capacity: usize, mode: QueueMode) -> Self {
        let n = shard_count();
        Self {
            shards: (0..n)
                .map(|_| Shard(Mutex::new(VecDeque::with_capacity(capacity))))
                .collect(),
            mode,
        }
    }

    fn shard(&self, i: usize) -> MutexGuard<'_, VecDeque<Conn<C>>> {
        lock(&self.shards[i].0)
    }

    pub(crate) fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.shard(i).len()).sum()
    }

    /// Queues a returned connection on this thread's queue.
    #[inline]
    pub(crate) fn push(&self, conn: Conn<C>) {
        self.shard(home(self.shards.len())).push_back(conn);
    }

    /// An idle connection: this thread's queue first, then the others.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Conn<C>> {
        let n = self.shards.len();
        let home = home(n);
        (0..n).find_map(|k| {
            let mut queue = self.shard((home + k) & (n - 1));
            match self.mode {
                QueueMode::Lifo => queue.pop_back(),
                QueueMode::Fifo => queue.pop_front(),
            }
        })
    }

    /// Takes every idle connection.
    pub(crate) fn drain(&self) -> Vec<Conn<C>> {
        (0..self.shards.len())
            .flat_map(|i| self.shard(i).drain(..).collect::<Vec<_>>())
            .collect()
    }

    /// Takes up to `n` connections, the oldest of each queue first.
    pub(crate) fn take_oldest(&self, n: usize) -> Vec<Conn<C>> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            let mut queue = self.shard(i);
            while out.len() < n {
                let Some(conn) = queue.pop_front() else { break };
                out.push(conn);
            }
        }
        out
    }

    /// Removes the connections `retire` picks, oldest first across all
    /// queues; `retire` sees each connection and how many idle ones would
    /// remain without it. Every queue is held meanwhile.
    pub(crate) fn take_where(
        &self,
        mut retire: impl FnMut(&Conn<C>, usize) -> Option<CloseReason>,
    ) -> Vec<(Conn<C>, CloseReason)> {
        let mut queues: Vec<_> = (0..self.shards.len()).map(|i| self.shard(i)).collect();
        let mut all: Vec<(usize, Conn<C>)> = queues
            .iter_mut()
            .enumerate()
            .flat_map(|(i, q)| q.drain(..).map(move |c| (i, c)))
            .collect();
        // Stable: within a queue, the older connection stays first.
        all.sort_by_key(|(_, c)| c.idle_since_ms);
        let mut remaining = all.len();
        let mut taken = Vec::new();
        for (i, conn) in all {
            match retire(&conn, remaining - 1) {
                Some(reason) => {
                    remaining -= 1;
                    taken.push((conn, reason));
                }
                None => queues[i].push_back(conn),
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::ConnState;

    fn conn(id: u64, idle_since_ms: u64) -> Conn<()> {
        Box::new(ConnState {
            raw: (),
            id,
            generation: 0,
            expires_ms: u64::MAX,
            idle_since_ms,
            needs_reset: false,
            unknown: false,
            canceller: None,
        })
    }

    #[test]
    fn a_thread_finds_what_another_thread_queued() {
        let idle = std::sync::Arc::new(Idle::new(4, QueueMode::Lifo));
        for id in 0..8 {
            let idle = idle.clone();
            std::thread::spawn(move || idle.push(conn(id, id)))
                .join()
                .unwrap();
        }
        let mut ids: Vec<_> = std::iter::from_fn(|| idle.pop()).map(|c| c.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn one_thread_reuses_newest_first_or_oldest_first() {
        for (mode, first) in [(QueueMode::Lifo, 2), (QueueMode::Fifo, 0)] {
            let idle = Idle::new(4, mode);
            (0..3).for_each(|id| idle.push(conn(id, id)));
            assert_eq!(idle.pop().unwrap().id, first);
        }
    }

    #[test]
    fn retirement_sees_the_oldest_first_across_queues() {
        let idle = std::sync::Arc::new(Idle::new(4, QueueMode::Lifo));
        for (id, since) in [(0, 30), (1, 10), (2, 20)] {
            let idle = idle.clone();
            std::thread::spawn(move || idle.push(conn(id, since)))
                .join()
                .unwrap();
        }
        let mut seen = Vec::new();
        let taken = idle.take_where(|c, remaining| {
            seen.push((c.id, remaining));
            (remaining >= 1).then_some(CloseReason::Idle)
        });
        assert_eq!(seen, [(1, 2), (2, 1), (0, 0)]);
        assert_eq!(taken.len(), 2);
        assert_eq!(idle.len(), 1);
        assert_eq!(idle.pop().unwrap().id, 0);
    }
}
