//! What counts as a failure: one shared notion for `call`, permits and the
//! tower service.

/// The verdict on one call, as the breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The backend worked.
    Success,
    /// The backend is at fault: counts toward tripping.
    Failure,
    /// Neither: the caller's own error (a unique-constraint violation, a bad
    /// argument). Counted apart, never trips, never closes.
    Ignored,
}

/// Maps a call's result to an [`Outcome`].
///
/// Closures `Fn(&Result<T, E>) -> Outcome` implement it:
///
/// ```
/// use keel_breaker::{Classify, Outcome};
///
/// #[derive(Debug)]
/// enum DbError { UniqueViolation, ConnectionLost }
///
/// let classify = |r: &Result<(), DbError>| match r {
///     Ok(_) => Outcome::Success,
///     Err(DbError::UniqueViolation) => Outcome::Ignored,
///     Err(DbError::ConnectionLost) => Outcome::Failure,
/// };
/// assert_eq!(classify.classify(&Err(DbError::UniqueViolation)), Outcome::Ignored);
/// ```
pub trait Classify<T, E> {
    /// The verdict on `result`.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

/// `Ok` is a success, every `Err` a failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifier;

impl<T, E> Classify<T, E> for DefaultClassifier {
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}
