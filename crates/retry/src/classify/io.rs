//! I/O errors: what a broken or refused connection says.

use super::{ErrorClass, Verdict};

/// Classifies an I/O error: refused connections had no effect; reset,
/// aborted, broken, timed-out or truncated ones may have; the rest are
/// permanent.
pub fn classify_io(error: &std::io::Error) -> Verdict {
    use std::io::ErrorKind as K;
    match error.kind() {
        K::ConnectionRefused | K::NotConnected | K::AddrNotAvailable => {
            Verdict::no_effect(ErrorClass::Connection)
        }
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::TimedOut
        | K::UnexpectedEof
        | K::Interrupted => Verdict::transient(ErrorClass::Connection),
        _ => Verdict::Permanent,
    }
}
