//! One clear line for what went wrong and what to do, and the exit code
//! that goes with it: never a panic or a backtrace.

use std::fmt;
use std::process::ExitCode;

/// A failure the program reports and exits on.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    hint: Option<String>,
    code: u8,
}

impl Failure {
    /// Bad input: a flag, a URL, a config file (exit 2).
    pub(crate) fn input(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            hint: None,
            code: 2,
        }
    }

    /// The environment refused: an unreachable database, a port in use
    /// (exit 1).
    pub(crate) fn environment(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            hint: None,
            code: 1,
        }
    }

    /// What to do about it.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[expect(clippy::print_stderr, reason = "the program's own error report")]
    pub(crate) fn report(self) -> ExitCode {
        match self.hint {
            Some(hint) => eprintln!("keel: {}\n  hint: {hint}", self.message),
            None => eprintln!("keel: {}", self.message),
        }
        ExitCode::from(self.code)
    }
}
