//! A mutex lock that survives poisoning: every value behind our mutexes is
//! whole after each statement, so a panic elsewhere leaves nothing torn.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
