//! A session store: can it answer?

use std::sync::Arc;

use keel_session_store::SessionStore;

use crate::status::error_chain;
use crate::{HealthCheck, Outcome};

/// Checks a session store by counting its sessions: Healthy with the count
/// in the details (`sessions`), Unhealthy with the store's error.
#[derive(Debug)]
pub struct SessionStoreCheck<S> {
    store: Arc<S>,
}

impl<S: SessionStore> SessionStoreCheck<S> {
    /// Checks `store`, shared with the service that uses it.
    pub fn new(store: Arc<S>) -> Self {
        Self { store }
    }
}

impl<S: SessionStore> HealthCheck for SessionStoreCheck<S> {
    async fn check(&self) -> Outcome {
        match self.store.len().await {
            Ok(sessions) => Outcome::healthy().with_detail("sessions", sessions),
            Err(error) => Outcome::unhealthy(format!(
                "the session store did not answer: {}",
                error_chain(&error)
            )),
        }
    }
}
