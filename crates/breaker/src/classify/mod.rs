//! What counts as a failure: one shared notion for `call`, permits and the
//! tower service.

#[cfg(feature = "sqlx")]
mod sqlx;

#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use sqlx::SqlxClassifier;

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

/// Judges errors alone, so that one classifier serves every response type
/// of a stack (a closure over `&Result<T, E>` fixes `T`): `Ok` is a success,
/// an `Err` gets the closure's verdict.
///
/// ```
/// use keel_breaker::{Classify, OnError, Outcome};
///
/// type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// let classify = OnError(|e: &BoxError| {
///     if e.to_string().contains("syntax") { Outcome::Ignored } else { Outcome::Failure }
/// });
/// let syntax: BoxError = "syntax error at or near \"SELEC\"".into();
/// // The same classifier judges a fetch of a row and an execute.
/// assert_eq!(classify.classify(&Err::<i32, _>(syntax)), Outcome::Ignored);
/// assert_eq!(classify.classify(&Ok::<u64, BoxError>(1)), Outcome::Success);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct OnError<F>(pub F);

impl<T, E, F> Classify<T, E> for OnError<F>
where
    F: Fn(&E) -> Outcome,
{
    #[inline]
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => (self.0)(e),
        }
    }
}
