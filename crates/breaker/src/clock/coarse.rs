//! The operating system's coarse monotonic clock.
//!
//! Why this module needs `unsafe`: `std` offers no coarse clock, and an
//! Open breaker must read the time on every rejection to know whether its
//! open duration has passed. `CLOCK_MONOTONIC_COARSE` costs about a quarter
//! of `Instant::now` on our machines (6 ns against 25 ns), which is what lets
//! a rejection cost about as much as a successful call. The one unsafe call
//! is `clock_gettime` / `clock_getres` into a local, properly initialised
//! `timespec`, which is sound for any clock id.
#![allow(unsafe_code, reason = "two libc calls, see the module docs")]

use std::sync::OnceLock;

fn read(clock: libc::clockid_t, getres: bool) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call;
    // both functions only write through the pointer.
    let rc = unsafe {
        if getres {
            libc::clock_getres(clock, &raw mut ts)
        } else {
            libc::clock_gettime(clock, &raw mut ts)
        }
    };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// The coarse clock's resolution: the most a reading lags the precise one.
fn resolution() -> Option<u64> {
    static RES: OnceLock<Option<u64>> = OnceLock::new();
    *RES.get_or_init(|| read(libc::CLOCK_MONOTONIC_COARSE, true))
}

/// A coarse reading in nanoseconds and its resolution.
#[inline]
pub(super) fn now() -> Option<(u64, u64)> {
    let res = resolution()?;
    Some((read(libc::CLOCK_MONOTONIC_COARSE, false)?, res))
}
