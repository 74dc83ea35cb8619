//! The state machine every handle and permit shares: the state word,
//! counters, window and transitions.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::permit::{Kind, Ticket};
use super::rejected::Retry;
use super::{Rejected, lock, nanos};
use crate::classify::Outcome;
use crate::clock::{self, Clock};
use crate::config::{BreakerConfig, MAX_HALF_OPEN_CALLS};
use crate::counters::{Counter, Counters, Padded};
use crate::observer::{DynObserver, Event};
use crate::state::{State, Word};
use crate::timer::{self, Expire};
use crate::window::SlidingWindow;

/// The external trip policy (failsafe's `FailurePolicy`, behind its feature).
pub(crate) trait ExternalPolicy: Send {
    fn record_success(&mut self);
    fn mark_dead_on_failure(&mut self) -> Option<Duration>;
    fn revived(&mut self);
}

pub(crate) struct Shared {
    pub(super) word: Padded<AtomicU64>,
    pub(super) consecutive: Padded<AtomicU32>,
    pub(super) counters: Counters,
    /// Nanoseconds since `base` when an Open breaker may probe.
    pub(super) open_until: AtomicU64,
    /// Nanoseconds since `base` of the latest half-open admission attempt.
    pub(super) last_trial_at: AtomicU64,
    /// The generation of the open period the shared timer will end, if any
    /// (`u64::MAX`: none). While the word is Open in this generation, the
    /// deadline is still ahead and a rejection needs no clock read.
    pub(super) timer_armed: AtomicU64,
    /// Whether open periods are ended by the shared timer.
    pub(super) automatic: bool,
    /// This breaker, for the timer (which must not keep it alive).
    pub(super) me: Weak<Shared>,
    pub(super) window: Option<SlidingWindow>,
    pub(super) window_clock: WindowClock,
    /// The Closed path stamps a call's start only for a slow-call policy.
    pub(super) clock_in_closed: bool,
    pub(super) slow_threshold_nanos: Option<u64>,
    pub(super) max_wait_nanos: u64,
    pub(super) config: BreakerConfig,
    pub(super) base: Instant,
    /// `base` in nanoseconds past [`epoch`](super::rejected::epoch) (system clock only).
    pub(super) base_since_epoch: u64,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) observer: Option<DynObserver>,
    pub(super) external: Option<Mutex<Box<dyn ExternalPolicy>>>,
    pub(super) name: Box<str>,
    pub(super) transitions: Mutex<Transitions>,
}

/// Where a time window's times come from: buckets a tenth of a second
/// wide or more need no precise clock.
#[derive(Clone, Copy, Debug)]
pub(super) enum WindowClock {
    /// No time window: nothing reads its times.
    Untimed,
    /// The kernel's coarse monotonic clock, in nanoseconds past this base
    /// (a read of a few ns where the precise clock takes tens).
    Coarse(u64),
    /// The breaker's own clock: it is not the system's (a test's manual
    /// clock must drive the window), a slow-call policy reads it anyway, or
    /// the buckets are too narrow for the coarse clock's tick.
    Breaker,
}

#[derive(Debug)]
pub(super) struct Transitions {
    /// Trips since the breaker was last closed, for the open backoff.
    pub(super) trips_in_a_row: u32,
    pub(super) opened_at: Option<u64>,
    pub(super) opens: u64,
    pub(super) rng: u64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("state", &self.load().state())
            .finish_non_exhaustive()
    }
}

/// The shared timer is one driver of the core: a deadline came, so it
/// hands the core the time, as any other driver would.
impl Expire for Shared {
    fn expire(&self, generation: u64) {
        if self.load().generation() == generation {
            self.handle_timeout(self.clock.now());
        }
    }
}

impl Shared {
    #[inline]
    pub(super) fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    /// When the current open period ends, on the breaker's clock; `None`
    /// unless the breaker is Open (or the deadline is past the clock's range).
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.load().state() != State::Open {
            return None;
        }
        let until = Duration::from_nanos(self.open_until.load(Ordering::Acquire));
        self.base.checked_add(until)
    }

    /// Ends the open period if `now` (on the breaker's clock) has reached
    /// its deadline: Open moves to HalfOpen. Anything else is left alone.
    pub(super) fn handle_timeout(&self, now: Instant) {
        let word = self.load();
        if word.state() != State::Open {
            return;
        }
        let now = nanos(now.saturating_duration_since(self.base));
        if now >= self.open_until.load(Ordering::Acquire) {
            self.transition(word, State::HalfOpen, now, None);
        }
    }

    /// Ends the open period now, whatever its deadline: Open moves to
    /// HalfOpen. Anything else is left alone.
    pub(super) fn end_open_period(&self) {
        let word = self.load();
        if word.state() == State::Open {
            self.transition(word, State::HalfOpen, self.now_nanos(), None);
        }
    }

    pub(crate) fn now_nanos(&self) -> u64 {
        nanos(self.clock.now().saturating_duration_since(self.base))
    }

    /// The time on the window's own clock; `precise` is the breaker's
    /// clock if the caller has read it already (0: not read).
    #[inline]
    pub(super) fn window_now(&self, precise: u64) -> u64 {
        match self.window_clock {
            WindowClock::Untimed => 0,
            WindowClock::Coarse(base) => {
                clock::coarse_nanos().map_or(0, |now| now.saturating_sub(base))
            }
            WindowClock::Breaker => self.precise_now(precise),
        }
    }

    /// `read` if the caller has read the breaker's clock (0: not read),
    /// else the clock now.
    fn precise_now(&self, read: u64) -> u64 {
        if read == 0 { self.now_nanos() } else { read }
    }

    // Always inlined, and kept this small so that it can be: the Closed
    // check is the whole hot path; everything else is a call away.
    #[inline(always)]
    pub(super) fn acquire(&self) -> Result<Ticket, Rejected> {
        let word = self.load();
        if word.is_closed() {
            return Ok(self.closed_ticket(word));
        }
        self.acquire_not_closed(word)
    }

    /// Turns calls away while an open period the timer will end is still
    /// running (no clock read: the timer has not fired, so the deadline is
    /// ahead), else takes the slow path.
    #[inline]
    fn acquire_not_closed(&self, word: Word) -> Result<Ticket, Rejected> {
        if word.state() == State::Open
            && word.generation() == self.timer_armed.load(Ordering::Relaxed)
        {
            let until = self.open_until.load(Ordering::Relaxed);
            let at = self.base_since_epoch.saturating_add(until);
            return Err(self.reject(State::Open, Retry::At(at)));
        }
        self.acquire_slow(word)
    }

    #[inline(always)]
    fn closed_ticket(&self, word: Word) -> Ticket {
        // 0 means "not timed", so a call at the clock's base reads as 1 ns.
        let started = if self.clock_in_closed {
            self.now_nanos().max(1)
        } else {
            0
        };
        Ticket::new(word.generation(), Kind::Closed, started)
    }

    #[cold]
    fn acquire_slow(&self, mut word: Word) -> Result<Ticket, Rejected> {
        loop {
            match word.state() {
                State::Closed => return Ok(self.closed_ticket(word)),
                State::Disabled => {
                    return Ok(Ticket::new(word.generation(), Kind::Untracked, 0));
                }
                State::ForcedOpen => return Err(self.reject(State::ForcedOpen, Retry::Unknown)),
                State::Open => {
                    let now = self.now_nanos();
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        let after = Duration::from_nanos(until - now);
                        return Err(self.reject(State::Open, Retry::After(after)));
                    }
                    word = self.transition(word, State::HalfOpen, now, None);
                }
                State::HalfOpen => {
                    let now = self.now_nanos();
                    let in_flight = word.in_flight();
                    if in_flight < self.config.half_open.permitted_calls {
                        // Stamped before the slot is taken, so a reclaimer can
                        // never see a fresh trial with an old stamp.
                        self.last_trial_at.store(now, Ordering::Release);
                        let next = word.with_in_flight(in_flight + 1);
                        match self.word.compare_exchange_weak(
                            word.0,
                            next.0,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => {
                                return Ok(Ticket::new(word.generation(), Kind::Trial, now.max(1)));
                            }
                            Err(actual) => word = Word(actual),
                        }
                        continue;
                    }
                    let last = self.last_trial_at.load(Ordering::Acquire);
                    if now.saturating_sub(last) < self.max_wait_nanos {
                        return Err(self.reject(State::HalfOpen, Retry::Unknown));
                    }
                    word = self.reclaim_trials(word);
                }
            }
        }
    }

    #[inline(always)]
    fn reject(&self, state: State, retry: Retry) -> Rejected {
        self.counters.add(Counter::Rejections);
        let rejected = Rejected::new(state, retry);
        if self.observer.is_some() {
            self.report_rejection(rejected);
        }
        rejected
    }

    #[cold]
    fn report_rejection(&self, rejected: Rejected) {
        if let Some(observer) = &self.observer {
            observer.0.on_event(&Event::Rejected {
                name: &self.name,
                state: rejected.state(),
                retry_after: rejected.retry_after(),
            });
        }
    }

    /// Every trial slot has been held past `max_wait` with no verdict: start
    /// a new round of trials. Verdicts of the old round will find a newer
    /// generation and be dropped; successes already counted stay.
    fn reclaim_trials(&self, seen: Word) -> Word {
        let _guard = lock(&self.transitions);
        let mut word = self.load();
        if word.generation() != seen.generation() || word.state() != State::HalfOpen {
            return word;
        }
        let fresh = word.next(State::HalfOpen);
        loop {
            let next = fresh.with_successes(word.successes());
            match self
                .word
                .compare_exchange(word.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next,
                Err(actual) => word = Word(actual),
            }
        }
    }

    #[inline(always)]
    pub(super) fn complete(&self, ticket: Ticket, outcome: Outcome) {
        self.counters.add(match outcome {
            Outcome::Success => Counter::Successes,
            Outcome::Failure => Counter::Failures,
            Outcome::Ignored => Counter::Ignored,
        });
        match ticket.kind() {
            Kind::Closed => self.complete_closed(ticket, outcome),
            Kind::Trial => self.complete_trial(ticket, outcome),
            Kind::Untracked => {}
        }
    }

    #[inline(always)]
    fn complete_closed(&self, ticket: Ticket, outcome: Outcome) {
        let word = self.load();
        if word.generation() != ticket.generation() || outcome == Outcome::Ignored {
            return;
        }
        if self.window.is_some() || self.external.is_some() {
            return self.complete_closed_with_policies(word, ticket, outcome);
        }
        match outcome {
            Outcome::Success => self.clear_consecutive(),
            _ => self.count_failure(word, 0, None),
        }
    }

    #[inline]
    fn clear_consecutive(&self) {
        // Read before writing: while the backend is healthy this line stays
        // shared between cores instead of bouncing.
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// Adds a failure in a row; trips at the threshold.
    fn count_failure(&self, word: Word, now: u64, open_for: Option<Duration>) {
        let Some(threshold) = self.config.consecutive_failures else {
            return;
        };
        let failures = self
            .consecutive
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures >= threshold {
            self.transition(word, State::Open, self.precise_now(now), open_for);
        }
    }

    // Not cold: with a rate policy or a failsafe policy this is every call.
    #[inline(never)]
    fn complete_closed_with_policies(&self, word: Word, ticket: Ticket, outcome: Outcome) {
        // Only a slow-call policy needs the precise end of every call.
        let now = if self.slow_threshold_nanos.is_some() {
            self.now_nanos()
        } else {
            0
        };
        let failed = outcome == Outcome::Failure;
        let slow = self.is_slow(ticket, now);
        let mut open_for = None;
        let mut external_trips = false;
        if let Some(external) = &self.external {
            let mut policy = lock(external);
            if failed {
                open_for = policy.mark_dead_on_failure();
                external_trips = open_for.is_some();
            } else {
                policy.record_success();
            }
        }
        if failed {
            self.count_failure(word, now, open_for);
        } else {
            self.clear_consecutive();
        }
        let mut trips = external_trips;
        if let Some(window) = &self.window {
            let at = self.window_now(now);
            window.record(at, failed, slow);
            // A success cannot trip a window that holds no failed or slow call.
            if failed || slow || window.may_hold_bad(at) {
                let stats = window.stats(at);
                if stats.calls >= u64::from(self.config.min_calls) {
                    trips |= self
                        .config
                        .failure_rate
                        .is_some_and(|limit| stats.failure_rate() >= limit);
                    trips |= self
                        .config
                        .slow_call_rate
                        .is_some_and(|limit| stats.slow_call_rate() >= limit);
                }
            }
        }
        if trips {
            self.transition(word, State::Open, self.precise_now(now), open_for);
        }
    }

    fn is_slow(&self, ticket: Ticket, now: u64) -> bool {
        self.slow_threshold_nanos
            .is_some_and(|limit| ticket.started != 0 && now.saturating_sub(ticket.started) >= limit)
    }

    #[cold]
    fn complete_trial(&self, ticket: Ticket, outcome: Outcome) {
        let now = self.now_nanos();
        // A trial that succeeds slowly says the backend is still unwell.
        let outcome = match outcome {
            Outcome::Success if self.is_slow(ticket, now) => Outcome::Failure,
            other => other,
        };
        let mut open_for = None;
        if let Some(external) = &self.external {
            let mut policy = lock(external);
            match outcome {
                Outcome::Success => policy.record_success(),
                Outcome::Failure => open_for = policy.mark_dead_on_failure(),
                Outcome::Ignored => {}
            }
        }
        let mut word = self.load();
        loop {
            if word.generation() != ticket.generation() || word.state() != State::HalfOpen {
                return;
            }
            if outcome == Outcome::Failure {
                self.transition(word, State::Open, now, open_for);
                return;
            }
            let success = u32::from(outcome == Outcome::Success);
            let next = word
                .with_in_flight(word.in_flight().saturating_sub(1))
                .with_successes((word.successes() + success).min(MAX_HALF_OPEN_CALLS));
            match self
                .word
                .compare_exchange(word.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if success == 1 && next.successes() >= self.config.half_open.success_threshold {
                        self.transition(next, State::Closed, now, None);
                    }
                    return;
                }
                Err(actual) => word = Word(actual),
            }
        }
    }

    #[cold]
    pub(super) fn abandon(&self, ticket: Ticket) {
        self.counters.add(Counter::Cancelled);
        if ticket.kind() != Kind::Trial {
            return;
        }
        let mut word = self.load();
        while word.generation() == ticket.generation() && word.state() == State::HalfOpen {
            let next = word.with_in_flight(word.in_flight().saturating_sub(1));
            match self
                .word
                .compare_exchange(word.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => word = Word(actual),
            }
        }
    }

    /// Moves from `from` (same generation and state) to `to`. Returns the word
    /// now in force, whether this call made the move or someone else did.
    #[cold]
    fn transition(&self, from: Word, to: State, now: u64, open_for: Option<Duration>) -> Word {
        let mut tr = lock(&self.transitions);
        let word = self.load();
        if word.generation() != from.generation() || word.state() != from.state() {
            return word;
        }
        self.prepare(&mut tr, to, now, open_for);
        let (from, next) = self.publish(word, to);
        if to == State::Open {
            // Under the lock, so that `open_until` and `timer_armed` belong
            // to this period and no later one.
            self.arm_timer(next.generation());
        }
        drop(tr);
        self.emit_transition(from.state(), to);
        next
    }

    /// Has the shared timer end the open period `generation`, when this
    /// breaker is driven by it. Called under the transitions lock (the
    /// timer never holds its own lock while it calls back).
    fn arm_timer(&self, generation: u64) {
        if !self.automatic {
            return;
        }
        let until = Duration::from_nanos(self.open_until.load(Ordering::Acquire));
        let Some(at) = self.base.checked_add(until) else {
            return; // a deadline past the clock's range: callers check the clock
        };
        let me: Weak<dyn Expire> = self.me.clone();
        if timer::schedule(at, generation, me) {
            self.timer_armed.store(generation, Ordering::Release);
        }
    }

    /// Stores the first word of state `to` over `word` (under the
    /// transitions lock); returns the word it replaced and the new one.
    fn publish(&self, mut word: Word, to: State) -> (Word, Word) {
        let next = word.next(to);
        // Only half-open slot counts change under us (lock-free, same
        // generation); the generation itself moves only under the lock.
        while let Err(actual) =
            self.word
                .compare_exchange(word.0, next.0, Ordering::AcqRel, Ordering::Acquire)
        {
            word = Word(actual);
        }
        (word, next)
    }

    /// Moves to `to` from any state (manual control).
    pub(super) fn force(&self, to: State) {
        let mut tr = lock(&self.transitions);
        let now = self.now_nanos();
        self.prepare(&mut tr, to, now, None);
        let (from, _) = self.publish(self.load(), to);
        drop(tr);
        if from.state() != to {
            self.emit_transition(from.state(), to);
        }
    }

    /// The work a transition does before the new state becomes visible.
    fn prepare(&self, tr: &mut Transitions, to: State, now: u64, open_for: Option<Duration>) {
        match to {
            State::Open => {
                let open_for = open_for.unwrap_or_else(|| self.next_open_duration(tr));
                self.open_until
                    .store(now.saturating_add(nanos(open_for)), Ordering::Release);
                tr.trips_in_a_row = tr.trips_in_a_row.saturating_add(1);
                tr.opened_at = Some(now);
                tr.opens += 1;
            }
            State::HalfOpen => self.last_trial_at.store(now, Ordering::Release),
            State::Closed => {
                self.consecutive.store(0, Ordering::Relaxed);
                if let Some(window) = &self.window {
                    window.reset();
                }
                if let Some(external) = &self.external {
                    lock(external).revived();
                }
                tr.trips_in_a_row = 0;
                tr.opened_at = None;
            }
            State::ForcedOpen | State::Disabled => {
                tr.opened_at = None;
            }
        }
    }

    fn next_open_duration(&self, tr: &mut Transitions) -> Duration {
        let base = self.config.open_duration;
        let Some(backoff) = &self.config.open_backoff else {
            return base;
        };
        let exponent = i32::try_from(tr.trips_in_a_row).unwrap_or(i32::MAX);
        let grown = base.as_secs_f64() * backoff.multiplier.powi(exponent);
        let capped = grown.min(backoff.max.as_secs_f64());
        let jitter = backoff.jitter * unit_interval(&mut tr.rng);
        // Whole microseconds: float noise must not turn 21 ms into 21 ms + 1 ns.
        // (A float-to-int `as` saturates, and NaN cannot arise from validated inputs.)
        let micros = (capped * (1.0 - jitter) * 1e6).round() as u64;
        Duration::from_micros(micros).min(backoff.max)
    }

    fn emit_transition(&self, from: State, to: State) {
        if let Some(observer) = &self.observer {
            observer.0.on_event(&Event::Transition {
                name: &self.name,
                from,
                to,
            });
        }
    }
}

/// splitmix64: a uniform draw in `[0, 1)`. Jitter needs spread, not secrecy.
#[expect(
    clippy::cast_precision_loss,
    reason = "53 random bits fit an f64 exactly"
)]
fn unit_interval(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}
