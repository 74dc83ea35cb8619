//! A model test of acquire / release / cancel interleavings: proptest drives
//! random sequences of checkouts (polled by hand, so each can be dropped at
//! any await point), releases, cancellations, broken and dirty connections,
//! clock jumps, resizes and evictions against a pool over the fake backend,
//! on a paused current-thread runtime. After every step it lets the pool
//! settle and checks what must always hold:
//!
//! - the pool's count of open connections is the backend's (nothing leaked,
//!   nothing counted twice), and every connection not idle is held by a guard;
//! - no more guards than slots (`max_size + max_overflow`, after a shrink
//!   once the excess is back);
//! - no lost slot: a checkout still waiting means every slot is held.
//!
//! At the end every guard and checkout is dropped, and the full capacity
//! must be checked out again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use keel_pool_core::{Pool, PoolConfig, PoolError, Pooled};
use proptest::prelude::*;

mod support;
use support::{Fake, FakeError, pool};

type Checkout = Pin<Box<dyn Future<Output = Result<Pooled<Fake>, PoolError<FakeError>>>>>;

#[derive(Clone, Debug)]
enum Step {
    Acquire,
    Release(usize),
    Cancel(usize),
    /// The held connection dies (its check-in discards it).
    Kill(usize),
    /// The held connection is left mid-transaction (its next checkout resets it).
    Dirty(usize),
    Advance(u64),
    Resize(usize),
    EvictAll,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Acquire),
        3 => any::<usize>().prop_map(Step::Release),
        2 => any::<usize>().prop_map(Step::Cancel),
        1 => any::<usize>().prop_map(Step::Kill),
        1 => any::<usize>().prop_map(Step::Dirty),
        1 => (1u64..3_000).prop_map(Step::Advance),
        1 => (1usize..5).prop_map(Step::Resize),
        1 => Just(Step::EvictAll),
    ]
}

struct Model {
    pool: Pool<Fake>,
    fake: Fake,
    held: Vec<Pooled<Fake>>,
    pending: Vec<Checkout>,
    max_size: usize,
    overflow: usize,
}

impl Model {
    async fn apply(&mut self, step: &Step) {
        match *step {
            Step::Acquire => {
                let pool = self.pool.clone();
                self.pending.push(Box::pin(async move { pool.get().await }));
            }
            Step::Release(i) if !self.held.is_empty() => {
                let i = i % self.held.len();
                drop(self.held.swap_remove(i));
            }
            Step::Cancel(i) if !self.pending.is_empty() => {
                let i = i % self.pending.len();
                drop(self.pending.swap_remove(i));
            }
            Step::Kill(i) if !self.held.is_empty() => {
                let i = i % self.held.len();
                self.held[i].alive.store(false, Ordering::SeqCst);
            }
            Step::Dirty(i) if !self.held.is_empty() => {
                let i = i % self.held.len();
                self.held[i].dirty = true;
            }
            Step::Advance(ms) => {
                // Maintenance ticks, validation and timeouts that fall due.
                tokio::time::advance(Duration::from_millis(ms)).await;
            }
            Step::Resize(n) => {
                // Refused below min_idle: the size stays.
                self.max_size = self.pool.resize(n).map_or(self.max_size, |()| n);
            }
            Step::EvictAll => self.pool.evict_all(),
            _ => {}
        }
    }

    /// Polls every waiting checkout once; keeps the ones still waiting.
    fn poll_pending(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut still = Vec::with_capacity(self.pending.len());
        for mut checkout in self.pending.drain(..) {
            match checkout.as_mut().poll(&mut cx) {
                Poll::Ready(Ok(conn)) => self.held.push(conn),
                // A wait timeout: the checkout is over, nothing is held.
                Poll::Ready(Err(PoolError::Timeout { .. })) => {}
                Poll::Ready(Err(e)) => panic!("unexpected checkout error: {e}"),
                Poll::Pending => still.push(checkout),
            }
        }
        self.pending = still;
    }

    /// Lets connect tasks and waiting checkouts run until nothing changes.
    async fn settle(&mut self) {
        for _ in 0..8 {
            self.poll_pending();
            tokio::task::yield_now().await;
        }
        self.poll_pending();
    }

    fn check(&self, after: &Step) -> Result<(), TestCaseError> {
        let stats = self.pool.stats();
        prop_assert_eq!(
            stats.size,
            self.fake.open(),
            "pool and backend disagree on open connections after {:?}",
            after
        );
        prop_assert!(
            stats.in_use >= self.held.len(),
            "a guard holds a connection the pool does not count, after {:?}",
            after
        );
        if self.fake.busy() == 0 {
            // Nothing in flight: every connection not idle is a guard's.
            prop_assert_eq!(
                stats.in_use,
                self.held.len(),
                "a connection is out that no guard holds after {:?}",
                after
            );
            let capacity = self.max_size + self.overflow;
            if !self.pending.is_empty() {
                prop_assert!(
                    self.held.len() >= capacity,
                    "lost slot: {} checkouts wait while {} of {} slots are held, after {:?}",
                    self.pending.len(),
                    self.held.len(),
                    capacity,
                    after
                );
            }
        }
        Ok(())
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let fake = Fake::new();
        // Slow enough that checkouts stay in flight across steps, so a
        // cancel can land in the middle of a connect or a validation.
        fake.set_connect_delay(Duration::from_millis(30));
        fake.set_validate_delay(Duration::from_millis(10));
        let mut config = PoolConfig::default();
        config.max_size = 3;
        config.max_overflow = 1;
        config.min_idle = 1;
        config.wait_timeout = Duration::from_secs(5);
        config.idle_timeout = Some(Duration::from_secs(4));
        config.max_lifetime = Some(Duration::from_secs(20));
        config.validate_after_idle = Some(Duration::from_secs(1));
        let mut model = Model {
            pool: pool(&fake, config).await,
            fake,
            held: Vec::new(),
            pending: Vec::new(),
            max_size: 3,
            overflow: 1,
        };
        for step in steps {
            model.apply(step).await;
            model.settle().await;
            model.check(step)?;
        }
        // Everything back: the whole capacity must be usable again.
        model.held.clear();
        model.pending.clear();
        model.apply(&Step::Advance(100)).await;
        model.settle().await;
        let capacity = model.max_size + model.overflow;
        for _ in 0..capacity {
            model.apply(&Step::Acquire).await;
        }
        model.settle().await;
        model.apply(&Step::Advance(100)).await;
        model.settle().await;
        prop_assert_eq!(model.held.len(), capacity, "capacity lost for good");
        model.check(&Step::Acquire)?;
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn acquire_release_cancel_interleavings_keep_the_invariants(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        run(&steps)?;
    }
}
