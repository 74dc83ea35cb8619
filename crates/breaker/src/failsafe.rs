//! Lets a failsafe `FailurePolicy` drive keel's trip decision.

use std::fmt;
use std::time::Duration;

use failsafe::failure_policy::FailurePolicy;

use crate::breaker::ExternalPolicy;

pub(crate) struct Adapter<P>(pub(crate) P);

impl<P> fmt::Debug for Adapter<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FailsafePolicy")
    }
}

impl<P: FailurePolicy + Send> ExternalPolicy for Adapter<P> {
    fn record_success(&mut self) {
        self.0.record_success();
    }

    fn mark_dead_on_failure(&mut self) -> Option<Duration> {
        self.0.mark_dead_on_failure()
    }

    fn revived(&mut self) {
        self.0.revived();
    }
}
