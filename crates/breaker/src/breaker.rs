//! The breaker: a state machine over atomics, driven by permits.
//!
//! Hot path (Closed, default policy): `try_acquire` is one load of the state
//! word; a success adds one to a per-thread counter and reads two lines that
//! no one writes while the backend is healthy. Nothing allocates, nothing
//! locks, no shared line is written. Transitions, which are rare, take a
//! mutex so that the work around them (open deadline, window reset,
//! bookkeeping) is never interleaved.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::classify::Outcome;
use crate::clock::{Clock, SystemClock};
use crate::config::{BreakerConfig, ConfigError, MAX_HALF_OPEN_CALLS};
use crate::counters::{Counter, Counters, Padded};
use crate::observer::{DynObserver, Event, Observer};
use crate::state::{State, Word};
use crate::timer::{self, Expire};
use crate::window::{SlidingWindow, WindowStats};

/// A circuit breaker. Clones share one breaker; it is `Send + Sync`.
///
/// ```
/// use keel_breaker::{BreakerConfig, CircuitBreaker, State};
///
/// let breaker = CircuitBreaker::new(BreakerConfig::default().with_consecutive_failures(Some(2)))?;
/// for _ in 0..2 {
///     let permit = breaker.try_acquire().expect("closed breakers admit");
///     permit.failure();
/// }
/// assert_eq!(breaker.state(), State::Open);
/// let rejected = breaker.try_acquire().unwrap_err();
/// assert!(rejected.retry_after().is_some());
/// # Ok::<(), keel_breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    pub(crate) shared: Arc<Shared>,
}

/// The external trip policy (failsafe's `FailurePolicy`, behind its feature).
pub(crate) trait ExternalPolicy: Send {
    fn record_success(&mut self);
    fn mark_dead_on_failure(&mut self) -> Option<Duration>;
    fn revived(&mut self);
}

pub(crate) struct Shared {
    word: Padded<AtomicU64>,
    consecutive: Padded<AtomicU32>,
    counters: Counters,
    /// Nanoseconds since `base` when an Open breaker may probe.
    open_until: AtomicU64,
    /// Nanoseconds since `base` of the latest half-open admission attempt.
    last_trial_at: AtomicU64,
    /// The generation of the open period the shared timer will end, if any
    /// (`u64::MAX`: none). While the word is Open in this generation, the
    /// deadline is still ahead and a rejection needs no clock read.
    timer_armed: AtomicU64,
    /// Whether open periods are ended by the shared timer.
    automatic: bool,
    /// This breaker, for the timer (which must not keep it alive).
    me: Weak<Shared>,
    window: Option<SlidingWindow>,
    /// The Closed path reads the clock only if a policy needs the time.
    clock_in_closed: bool,
    slow_threshold_nanos: Option<u64>,
    max_wait_nanos: u64,
    config: BreakerConfig,
    base: Instant,
    /// `base` in nanoseconds past [`epoch`] (system clock only).
    base_since_epoch: u64,
    clock: Arc<dyn Clock>,
    observer: Option<DynObserver>,
    external: Option<Mutex<Box<dyn ExternalPolicy>>>,
    name: Box<str>,
    transitions: Mutex<Transitions>,
}

#[derive(Debug)]
struct Transitions {
    /// Trips since the breaker was last closed, for the open backoff.
    trips_in_a_row: u32,
    opened_at: Option<u64>,
    opens: u64,
    rng: u64,
}

/// Why a call was turned away.
// Two plain words, like `Ticket`: a rejection travels through memory, and a
// narrow field read back as part of a wider load stalls store forwarding on
// every rejection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The state's word tag, and the [`Retry`] kind << 8.
    tag: u64,
    /// The [`Retry`] value.
    nanos: u64,
}

/// When a rejected caller may try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    Unknown,
    After(Duration),
    /// Nanoseconds past [`epoch`] on the system clock: the time left is
    /// worked out only if asked, so that the rejection reads no clock.
    At(u64),
}

/// The origin of [`Retry::At`]: taken before any breaker's base, so that
/// every system-clock base is at or after it.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Rejected {
    #[inline(always)]
    fn new(state: State, retry: Retry) -> Self {
        let (kind, nanos) = match retry {
            Retry::Unknown => (0, 0),
            Retry::After(after) => (1, self::nanos(after)),
            Retry::At(at) => (2, at),
        };
        Self {
            tag: Word::enter(state, 0).0 | kind << 8,
            nanos,
        }
    }

    fn retry(&self) -> Retry {
        match self.tag >> 8 {
            1 => Retry::After(Duration::from_nanos(self.nanos)),
            2 => Retry::At(self.nanos),
            _ => Retry::Unknown,
        }
    }

    /// The state that turned the call away: `Open`, `HalfOpen` (all trial
    /// slots busy) or `ForcedOpen`.
    pub fn state(&self) -> State {
        Word(self.tag & 0xff).state()
    }

    /// How long until the breaker will admit a trial call, when known
    /// (an Open breaker knows; a half-open or forced-open one does not).
    pub fn retry_after(&self) -> Option<Duration> {
        match self.retry() {
            Retry::Unknown => None,
            Retry::After(after) => Some(after),
            Retry::At(at) => epoch()
                .checked_add(Duration::from_nanos(at))
                .map(|at| at.saturating_duration_since(Instant::now())),
        }
    }
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("state", &self.state())
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state() {
            State::HalfOpen => {
                f.write_str("circuit breaker is half-open and its trial calls are busy")
            }
            State::ForcedOpen => f.write_str("circuit breaker is forced open"),
            state => {
                write!(f, "circuit breaker is {}", state.as_str())?;
                if let Some(after) = self.retry_after() {
                    write!(f, "; retry after {after:?}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Rejected {}

/// A snapshot of a breaker for health reporting.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Info {
    /// The current state.
    pub state: State,
    /// Failures in a row in the current Closed period.
    pub consecutive_failures: u32,
    /// The sliding window's counts, when a rate policy is configured.
    pub window: Option<WindowStats>,
    /// When the breaker last opened, while it is Open or HalfOpen.
    pub opened_at: Option<Instant>,
    /// How long until an Open breaker admits a trial call.
    pub retry_after: Option<Duration>,
    /// Calls that reported an outcome (`successes + failures + ignored`).
    pub calls: u64,
    /// Calls classified as successes.
    pub successes: u64,
    /// Calls classified as failures.
    pub failures: u64,
    /// Calls classified as ignored.
    pub ignored: u64,
    /// Admitted calls dropped without an outcome (cancelled futures).
    pub cancelled: u64,
    /// Calls turned away.
    pub rejections: u64,
    /// Times the breaker tripped open.
    pub opens: u64,
}

/// What a permit is for: decides what its verdict does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Closed = 0,
    Trial = 1,
    /// Disabled breaker: only counters.
    Untracked = 2,
}

/// A permit's identity, kept to two plain words: the async state machines
/// that carry permits copy them around, and mixed-width fields there cost
/// store-forwarding stalls on the hot path.
#[derive(Clone, Copy, Debug)]
struct Ticket {
    /// Generation << 2 | kind.
    tag: u64,
    /// Nanoseconds since `base` when the call started; 0 if not timed.
    started: u64,
}

impl Ticket {
    #[inline]
    fn new(generation: u64, kind: Kind, started: u64) -> Self {
        Self {
            tag: generation << 2 | kind as u64,
            started,
        }
    }

    #[inline]
    fn generation(self) -> u64 {
        self.tag >> 2
    }

    #[inline]
    fn kind(self) -> Kind {
        match self.tag & 3 {
            0 => Kind::Closed,
            1 => Kind::Trial,
            _ => Kind::Untracked,
        }
    }
}

/// Leave to make one call, borrowed from the breaker. Report the verdict
/// with [`success`](Self::success), [`failure`](Self::failure),
/// [`ignore`](Self::ignore) or [`record`](Self::record); dropping it without
/// a verdict is neutral (a cancelled call says nothing about the backend) and
/// frees a half-open trial slot.
#[must_use = "a permit reports nothing unless told the outcome"]
#[derive(Debug)]
pub struct Permit<'a> {
    shared: &'a Shared,
    ticket: Ticket,
}

/// An owned [`Permit`], for futures and tasks that outlive the borrow.
#[must_use = "a permit reports nothing unless told the outcome"]
#[derive(Debug)]
pub struct OwnedPermit {
    /// `None` once a verdict was given (so drop has nothing to do).
    handle: Option<Handle>,
    ticket: Ticket,
}

/// How an owned permit reaches its breaker.
#[derive(Debug)]
enum Handle {
    Shared(Arc<Shared>),
    /// Through a handle private to one tower service clone: cloning it per
    /// call touches a reference count no other core writes, where cloning
    /// `Arc<Shared>` would bounce one line between all callers.
    #[cfg(feature = "tower")]
    Local(Arc<CircuitBreaker>),
}

impl std::ops::Deref for Handle {
    type Target = Shared;
    #[inline]
    fn deref(&self) -> &Shared {
        match self {
            Handle::Shared(shared) => shared,
            #[cfg(feature = "tower")]
            Handle::Local(breaker) => &breaker.shared,
        }
    }
}

macro_rules! permit_verdicts {
    () => {
        /// Reports a success.
        #[inline]
        pub fn success(self) {
            self.record(Outcome::Success);
        }

        /// Reports a failure.
        #[inline]
        pub fn failure(self) {
            self.record(Outcome::Failure);
        }

        /// Reports a call that says nothing about the backend's health.
        #[inline]
        pub fn ignore(self) {
            self.record(Outcome::Ignored);
        }

        /// Whether this is a half-open trial call.
        pub fn is_trial(&self) -> bool {
            self.ticket.kind() == Kind::Trial
        }
    };
}

impl Permit<'_> {
    permit_verdicts!();

    /// Reports `outcome`.
    #[inline]
    pub fn record(self, outcome: Outcome) {
        // The verdict replaces the drop-time "no verdict" path.
        let this = std::mem::ManuallyDrop::new(self);
        this.shared.complete(this.ticket, outcome);
    }
}

impl OwnedPermit {
    permit_verdicts!();

    /// Reports `outcome`.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        if let Some(handle) = self.handle.take() {
            handle.complete(self.ticket, outcome);
        }
    }

    /// Restarts the slow-call timer: a permit taken ahead of the call (as the
    /// tower service does in `poll_ready`) times the call, not the wait.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn restart_timer(&mut self) {
        if self.ticket.started != 0
            && let Some(handle) = &self.handle
        {
            self.ticket.started = handle.now_nanos().max(1);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.shared.abandon(self.ticket);
    }
}

impl Drop for OwnedPermit {
    #[inline]
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abandon(self.ticket);
        }
    }
}

/// Builds a [`CircuitBreaker`] with a name, clock, observer or seed.
#[must_use = "a builder does nothing until built"]
pub struct BreakerBuilder {
    config: BreakerConfig,
    name: String,
    clock: Arc<dyn Clock>,
    observer: Option<Arc<dyn Observer>>,
    seed: Option<u64>,
    external: Option<Box<dyn ExternalPolicy>>,
}

impl fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl BreakerBuilder {
    /// Names the breaker (events and `Debug` carry the name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The time source (default [`SystemClock`]).
    pub fn clock(self, clock: impl Clock) -> Self {
        self.shared_clock(Arc::new(clock))
    }

    /// A time source shared with other breakers.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Receives the breaker's events.
    pub fn observer(self, observer: impl Observer) -> Self {
        self.shared_observer(Arc::new(observer))
    }

    /// An observer shared with other breakers.
    pub fn shared_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Seeds the open-duration jitter, for reproducible schedules.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Lets a failsafe `FailurePolicy` decide trips too, beside the policies
    /// of the config. It is asked on every outcome under a mutex, as failsafe
    /// does; its open duration, when it gives one, replaces the config's.
    #[cfg(feature = "failsafe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "failsafe")))]
    pub fn failure_policy<P>(mut self, policy: P) -> Self
    where
        P: failsafe::failure_policy::FailurePolicy + Send + 'static,
    {
        self.external = Some(Box::new(crate::failsafe::Adapter(policy)));
        self
    }

    /// Validates the config and builds the breaker, Closed.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field; also when no trip policy at
    /// all is enabled.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.config.validate()?;
        let config = &self.config;
        if config.consecutive_failures.is_none() && !config.uses_window() && self.external.is_none()
        {
            return Err(ConfigError::new(
                "consecutive_failures",
                "no trip policy is enabled: set consecutive_failures, failure_rate or slow_call_rate",
            ));
        }
        let window = config
            .uses_window()
            .then(|| SlidingWindow::new(config.window));
        let slow_threshold_nanos = config
            .slow_call_rate
            .map(|_| nanos(config.slow_call_threshold));
        let clock_in_closed = slow_threshold_nanos.is_some()
            || window.as_ref().is_some_and(SlidingWindow::needs_clock);
        let epoch = epoch();
        let base = self.clock.now();
        let base_since_epoch = nanos(base.saturating_duration_since(epoch));
        // The timer sleeps on the system clock, so only a breaker on that
        // clock can be driven by it.
        let automatic = config.half_open.automatic && self.clock.is_system();
        let max_wait_nanos = nanos(config.half_open.max_wait);
        let seed = self
            .seed
            .unwrap_or_else(|| RandomState::new().hash_one(base));
        Ok(CircuitBreaker {
            shared: Arc::new_cyclic(|me| Shared {
                word: Padded(AtomicU64::new(Word::enter(State::Closed, 0).0)),
                consecutive: Padded(AtomicU32::new(0)),
                counters: Counters::new(),
                open_until: AtomicU64::new(0),
                last_trial_at: AtomicU64::new(0),
                timer_armed: AtomicU64::new(u64::MAX),
                automatic,
                me: me.clone(),
                window,
                clock_in_closed,
                slow_threshold_nanos,
                max_wait_nanos,
                base,
                base_since_epoch,
                clock: self.clock,
                observer: self.observer.map(DynObserver),
                external: self.external.map(Mutex::new),
                name: self.name.into_boxed_str(),
                transitions: Mutex::new(Transitions {
                    trips_in_a_row: 0,
                    opened_at: None,
                    opens: 0,
                    rng: seed,
                }),
                config: self.config,
            }),
        })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks can leave the data half-updated, so a panic
    // elsewhere while one was held does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CircuitBreaker {
    /// A breaker with this config, the system clock and no observer.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// A builder for a breaker with a name, clock, observer or seed.
    pub fn builder(config: BreakerConfig) -> BreakerBuilder {
        BreakerBuilder {
            config,
            name: String::new(),
            clock: Arc::new(SystemClock),
            observer: None,
            seed: None,
            external: None,
        }
    }

    /// Asks leave to make a call.
    ///
    /// # Errors
    /// [`Rejected`] while Open (with `retry_after`), ForcedOpen, or HalfOpen
    /// with every trial slot taken. An Open breaker whose open duration has
    /// passed moves to HalfOpen here and admits the caller as a trial.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let ticket = self.shared.acquire()?;
        Ok(Permit {
            shared: &self.shared,
            ticket,
        })
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a
    /// handle to the breaker (for `'static` futures and spawned tasks).
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, Rejected> {
        let ticket = self.shared.acquire()?;
        Ok(OwnedPermit {
            handle: Some(Handle::Shared(Arc::clone(&self.shared))),
            ticket,
        })
    }

    /// Like [`try_acquire_owned`](Self::try_acquire_owned), through a handle
    /// that one tower service clone owns (see [`Handle::Local`]).
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn try_acquire_local(handle: &Arc<CircuitBreaker>) -> Result<OwnedPermit, Rejected> {
        let ticket = handle.shared.acquire()?;
        Ok(OwnedPermit {
            handle: Some(Handle::Local(Arc::clone(handle))),
            ticket,
        })
    }

    /// The current state. An Open breaker reports Open until the next call
    /// attempt after its open duration moves it to HalfOpen.
    pub fn state(&self) -> State {
        self.shared.load().state()
    }

    /// The breaker's name (empty unless given one).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The config it was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// A snapshot of state and counters.
    pub fn info(&self) -> Info {
        let shared = &self.shared;
        let now = shared.now_nanos();
        let word = shared.load();
        let t = shared.counters.totals();
        let (opened_at, opens) = {
            let tr = lock(&shared.transitions);
            (tr.opened_at, tr.opens)
        };
        let open = word.state() == State::Open;
        Info {
            state: word.state(),
            consecutive_failures: shared.consecutive.load(Ordering::Relaxed),
            window: shared.window.as_ref().map(|w| w.stats(now)),
            opened_at: opened_at
                .filter(|_| matches!(word.state(), State::Open | State::HalfOpen))
                .map(|n| shared.base + Duration::from_nanos(n)),
            retry_after: open.then(|| {
                Duration::from_nanos(
                    shared
                        .open_until
                        .load(Ordering::Acquire)
                        .saturating_sub(now),
                )
            }),
            calls: t.successes + t.failures + t.ignored,
            successes: t.successes,
            failures: t.failures,
            ignored: t.ignored,
            cancelled: t.cancelled,
            rejections: t.rejections,
            opens,
        }
    }

    /// Closes the breaker and forgets its history (failure counts, window,
    /// open backoff). Also the way out of ForcedOpen and Disabled.
    pub fn reset(&self) {
        self.shared.force(State::Closed);
    }

    /// Opens the breaker until [`reset`](Self::reset): every call is rejected.
    pub fn force_open(&self) {
        self.shared.force(State::ForcedOpen);
    }

    /// Switches the breaker off until [`reset`](Self::reset): every call is
    /// admitted and none can trip it.
    pub fn disable(&self) {
        self.shared.force(State::Disabled);
    }

    /// Whether two handles share one breaker.
    pub fn same_breaker(&self, other: &CircuitBreaker) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Default for CircuitBreaker {
    /// A breaker with [`BreakerConfig::default`].
    fn default() -> Self {
        // The default config is valid by construction (a unit test holds it to that).
        #[expect(clippy::expect_used, reason = "the default config is valid")]
        Self::new(BreakerConfig::default()).expect("the default breaker config is valid")
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("state", &self.load().state())
            .finish_non_exhaustive()
    }
}

impl Expire for Shared {
    fn expire(&self, generation: u64) {
        let word = self.load();
        if word.state() == State::Open && word.generation() == generation {
            self.transition(word, State::HalfOpen, self.now_nanos(), None);
        }
    }
}

impl Shared {
    #[inline]
    fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    pub(crate) fn now_nanos(&self) -> u64 {
        nanos(self.clock.now().saturating_duration_since(self.base))
    }

    // Always inlined, and kept this small so that it can be: the Closed
    // check is the whole hot path; everything else is a call away.
    #[inline(always)]
    fn acquire(&self) -> Result<Ticket, Rejected> {
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
    fn complete(&self, ticket: Ticket, outcome: Outcome) {
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
            let now = if now == 0 { self.now_nanos() } else { now };
            self.transition(word, State::Open, now, open_for);
        }
    }

    // Not cold: with a rate policy or a failsafe policy this is every call.
    #[inline(never)]
    fn complete_closed_with_policies(&self, word: Word, ticket: Ticket, outcome: Outcome) {
        let now = self.now_nanos();
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
            window.record(now, failed, slow);
            let stats = window.stats(now);
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
        if trips {
            self.transition(word, State::Open, now, open_for);
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
    fn abandon(&self, ticket: Ticket) {
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
    fn force(&self, to: State) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use crate::config::{HalfOpenConfig, OpenBackoff, Window};

    fn breaker(config: BreakerConfig) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new();
        let b = CircuitBreaker::builder(config)
            .clock(clock.clone())
            .seed(7)
            .build()
            .unwrap();
        (b, clock)
    }

    fn fail(b: &CircuitBreaker, n: usize) {
        for _ in 0..n {
            b.try_acquire().unwrap().failure();
        }
    }

    #[test]
    fn default_breaker_builds() {
        assert_eq!(CircuitBreaker::default().state(), State::Closed);
    }

    #[test]
    fn no_trip_policy_is_refused() {
        let err = CircuitBreaker::new(BreakerConfig::default().with_consecutive_failures(None))
            .unwrap_err();
        assert_eq!(err.field(), "consecutive_failures");
    }

    #[test]
    fn consecutive_failures_trip_and_successes_reset_the_count() {
        let (b, _) = breaker(BreakerConfig::default().with_consecutive_failures(Some(3)));
        fail(&b, 2);
        b.try_acquire().unwrap().success();
        fail(&b, 2);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.info().consecutive_failures, 2);
        fail(&b, 1);
        assert_eq!(b.state(), State::Open);
        let info = b.info();
        assert_eq!((info.failures, info.successes, info.opens), (5, 1, 1));
    }

    #[test]
    fn ignored_outcomes_neither_trip_nor_reset() {
        let (b, _) = breaker(BreakerConfig::default().with_consecutive_failures(Some(2)));
        fail(&b, 1);
        b.try_acquire().unwrap().ignore();
        assert_eq!(b.info().consecutive_failures, 1);
        fail(&b, 1);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.info().ignored, 1);
    }

    #[test]
    fn open_rejects_with_retry_after_then_half_opens() {
        let (b, clock) = breaker(
            BreakerConfig::default()
                .with_consecutive_failures(Some(1))
                .with_open_duration(Duration::from_secs(10)),
        );
        fail(&b, 1);
        clock.advance(Duration::from_secs(4));
        let r = b.try_acquire().unwrap_err();
        assert_eq!(r.state(), State::Open);
        assert_eq!(r.retry_after(), Some(Duration::from_secs(6)));
        assert_eq!(b.info().retry_after, Some(Duration::from_secs(6)));
        clock.advance(Duration::from_secs(6));
        let trial = b.try_acquire().unwrap();
        assert!(trial.is_trial());
        assert_eq!(b.state(), State::HalfOpen);
        trial.success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.info().rejections, 1);
    }

    #[test]
    fn trial_failure_reopens_with_growing_duration() {
        let (b, clock) = breaker(
            BreakerConfig::default()
                .with_consecutive_failures(Some(1))
                .with_open_duration(Duration::from_secs(1))
                .with_open_backoff(OpenBackoff::new(2.0, Duration::from_secs(3)).with_jitter(0.0)),
        );
        fail(&b, 1);
        for expected in [2, 3, 3] {
            clock.advance(Duration::from_secs(10));
            b.try_acquire().unwrap().failure();
            let r = b.try_acquire().unwrap_err();
            assert_eq!(r.retry_after(), Some(Duration::from_secs(expected)));
        }
        clock.advance(Duration::from_secs(10));
        b.try_acquire().unwrap().success();
        fail(&b, 1);
        // Closing reset the backoff.
        assert_eq!(
            b.try_acquire().unwrap_err().retry_after(),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn jitter_shortens_within_bounds() {
        let (b, clock) = breaker(
            BreakerConfig::default()
                .with_consecutive_failures(Some(1))
                .with_open_duration(Duration::from_secs(100))
                .with_open_backoff(
                    OpenBackoff::new(1.0, Duration::from_secs(100)).with_jitter(0.5),
                ),
        );
        let mut seen = Vec::new();
        fail(&b, 1);
        for _ in 0..20 {
            let after = b.try_acquire().unwrap_err().retry_after().unwrap();
            assert!(after > Duration::from_secs(50) && after <= Duration::from_secs(100));
            seen.push(after);
            clock.advance(Duration::from_secs(200));
            b.try_acquire().unwrap().failure();
        }
        seen.dedup();
        assert!(seen.len() > 10, "jitter should vary: {seen:?}");
    }

    #[test]
    fn half_open_needs_success_threshold() {
        let (b, clock) = breaker(
            BreakerConfig::default()
                .with_consecutive_failures(Some(1))
                .with_half_open(HalfOpenConfig::new(2, 3)),
        );
        fail(&b, 1);
        clock.advance(Duration::from_secs(60));
        let t1 = b.try_acquire().unwrap();
        let t2 = b.try_acquire().unwrap();
        assert_eq!(b.try_acquire().unwrap_err().state(), State::HalfOpen);
        t1.success();
        t2.success();
        assert_eq!(b.state(), State::HalfOpen);
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn lost_trial_is_reclaimed_after_max_wait() {
        let (b, clock) = breaker(
            BreakerConfig::default()
                .with_consecutive_failures(Some(1))
                .with_half_open(HalfOpenConfig::new(1, 1).with_max_wait(Duration::from_secs(5))),
        );
        fail(&b, 1);
        clock.advance(Duration::from_secs(60));
        let lost = b.try_acquire().unwrap();
        std::mem::forget(lost); // never reports, never drops
        clock.advance(Duration::from_secs(4));
        assert!(b.try_acquire().is_err());
        clock.advance(Duration::from_secs(1));
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn stale_verdicts_are_ignored() {
        let (b, clock) = breaker(BreakerConfig::default().with_consecutive_failures(Some(1)));
        let old = b.try_acquire().unwrap();
        fail(&b, 1);
        clock.advance(Duration::from_secs(60));
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), State::Closed);
        old.failure(); // issued two generations ago
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.info().failures, 2);
    }

    #[test]
    fn failure_rate_trips_after_min_calls() {
        let (b, _) = breaker(
            BreakerConfig::default()
                .with_consecutive_failures(None)
                .with_failure_rate(0.5)
                .with_window(Window::Count { calls: 10 })
                .with_min_calls(4),
        );
        b.try_acquire().unwrap().success();
        fail(&b, 2);
        assert_eq!(b.state(), State::Closed, "3 calls < min_calls");
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), State::Open, "2 of 4 failed");
        let window = b.info().window.unwrap();
        assert_eq!((window.calls, window.failures), (4, 2));
    }

    #[test]
    fn time_window_forgets_old_failures() {
        let (b, clock) = breaker(
            BreakerConfig::default()
                .with_consecutive_failures(None)
                .with_failure_rate(0.5)
                .with_window(Window::Time {
                    duration: Duration::from_secs(10),
                    buckets: 10,
                })
                .with_min_calls(4),
        );
        fail(&b, 3);
        clock.advance(Duration::from_secs(11));
        for _ in 0..3 {
            b.try_acquire().unwrap().success();
        }
        fail(&b, 1);
        assert_eq!(b.state(), State::Closed, "1 of 4 in the window");
        assert_eq!(b.info().window.unwrap().calls, 4);
    }

    #[test]
    fn slow_calls_trip() {
        let (b, clock) = breaker(
            BreakerConfig::default()
                .with_consecutive_failures(None)
                .with_slow_calls(0.5, Duration::from_secs(1))
                .with_window(Window::Count { calls: 4 })
                .with_min_calls(2),
        );
        b.try_acquire().unwrap().success();
        let slow = b.try_acquire().unwrap();
        clock.advance(Duration::from_secs(2));
        slow.success();
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn manual_states() {
        let (b, _) = breaker(BreakerConfig::default().with_consecutive_failures(Some(1)));
        b.force_open();
        let r = b.try_acquire().unwrap_err();
        assert_eq!((r.state(), r.retry_after()), (State::ForcedOpen, None));
        b.disable();
        fail(&b, 10);
        assert_eq!(b.state(), State::Disabled);
        b.reset();
        assert_eq!(b.state(), State::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), State::Open);
        b.reset();
        b.try_acquire().unwrap().success();
    }

    #[test]
    fn observer_sees_transitions_and_rejections() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let b =
            CircuitBreaker::builder(BreakerConfig::default().with_consecutive_failures(Some(1)))
                .name("db")
                .observer(move |e: &Event<'_>| sink.lock().unwrap().push(format!("{e:?}")))
                .build()
                .unwrap();
        fail(&b, 1);
        let _ = b.try_acquire();
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[0].contains("Transition") && events[0].contains("Open"));
        assert!(events[1].contains("Rejected") && events[1].contains("\"db\""));
    }

    fn system_breaker(open_for: Duration, automatic: bool) -> CircuitBreaker {
        CircuitBreaker::new(
            BreakerConfig::default()
                .with_consecutive_failures(Some(1))
                .with_open_duration(open_for)
                .with_half_open(HalfOpenConfig::default().with_automatic(automatic)),
        )
        .unwrap()
    }

    #[test]
    fn system_clock_rejections_report_retry_after() {
        for automatic in [true, false] {
            let b = system_breaker(Duration::from_secs(3600), automatic);
            fail(&b, 1);
            let rejected = b.try_acquire().unwrap_err();
            let after = rejected.retry_after().unwrap();
            assert!(
                after <= Duration::from_secs(3600) && after > Duration::from_secs(3500),
                "{after:?}"
            );
            assert!(rejected.to_string().contains("retry after"), "{rejected}");
        }
    }

    /// Polls `b.state()` until it is no longer Open, for at most 30 s.
    fn wait_while_open(b: &CircuitBreaker) -> State {
        let start = Instant::now();
        while b.state() == State::Open && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        b.state()
    }

    #[test]
    fn the_timer_moves_an_idle_breaker_to_half_open() {
        let b = system_breaker(Duration::from_millis(50), true);
        let opened = Instant::now();
        fail(&b, 1);
        assert_eq!(b.state(), State::Open);
        // No call is made: the timer alone ends the open period, never early.
        assert_eq!(wait_while_open(&b), State::HalfOpen);
        assert!(opened.elapsed() >= Duration::from_millis(50));
        let trial = b.try_acquire().unwrap();
        assert!(trial.is_trial());
        trial.failure();
        // A failed trial reopens, and the timer takes the new period too.
        assert_eq!(b.state(), State::Open);
        assert_eq!(wait_while_open(&b), State::HalfOpen);
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.info().opens, 2);
    }

    #[test]
    fn without_the_timer_the_next_call_ends_the_open_period() {
        let b = system_breaker(Duration::from_millis(20), false);
        fail(&b, 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), State::Open, "nothing moves it but a call");
        assert!(b.try_acquire().unwrap().is_trial());
    }

    #[test]
    fn the_timer_leaves_a_reset_breaker_alone() {
        let b = system_breaker(Duration::from_millis(20), true);
        fail(&b, 1);
        b.reset();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.state(), State::Closed);
        b.force_open();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.state(), State::ForcedOpen);
    }

    #[test]
    fn a_dropped_open_breaker_is_freed() {
        let b = system_breaker(Duration::from_secs(3600), true);
        fail(&b, 1);
        let weak = Arc::downgrade(&b.shared);
        drop(b);
        assert!(weak.upgrade().is_none(), "the timer must not keep it alive");
    }

    #[test]
    fn rejection_message_names_state() {
        let r = Rejected::new(State::Open, Retry::After(Duration::from_secs(3)));
        assert_eq!(r.to_string(), "circuit breaker is open; retry after 3s");
    }
}
