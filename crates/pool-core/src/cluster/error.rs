//! What a cluster checkout can fail with.

use std::fmt;

use super::attrs::TargetSessionAttrs;
use super::endpoint::EndpointInfo;
use crate::error::PoolError;

/// Why a cluster checkout failed. `E` is the backend's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError<E> {
    /// No endpoint in rotation may serve the checkout; the report says
    /// what each endpoint is and why it was passed over.
    #[error("no endpoint for target_session_attrs={attrs}: {}", Report(endpoints))]
    NoEndpoint {
        /// What the checkout needed.
        attrs: TargetSessionAttrs,
        /// Every endpoint as it stood.
        endpoints: Vec<EndpointInfo>,
    },
    /// The chosen endpoint's pool failed the checkout.
    #[error("endpoint {endpoint}: {source}")]
    Pool {
        /// The endpoint's name (`host:port/db`).
        endpoint: String,
        /// The pool's error.
        #[source]
        source: PoolError<E>,
    },
}

impl<E> ClusterError<E> {
    /// The pool's error, when the chosen endpoint failed.
    pub fn pool_error(&self) -> Option<&PoolError<E>> {
        match self {
            Self::Pool { source, .. } => Some(source),
            Self::NoEndpoint { .. } => None,
        }
    }
}

struct Report<'a>(&'a [EndpointInfo]);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
