//! Breakers by key (endpoint, shard, tenant), created on demand from one config.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock};

use crate::breaker::{CircuitBreaker, Info};
use crate::clock::{Clock, SystemClock};
use crate::config::{BreakerConfig, ConfigError};
use crate::observer::Observer;

/// Breakers by key, all built from one config and sharing a clock and an
/// observer (which sees each breaker's key as its name).
///
/// ```
/// use keel_breaker::{BreakerConfig, BreakerRegistry};
///
/// let registry: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default())?;
/// let primary = registry.get("db-primary");
/// let replica = registry.get("db-replica");
/// assert!(!primary.same_breaker(&replica));
/// assert!(primary.same_breaker(&registry.get("db-primary")));
/// for (key, info) in registry.infos() {
///     println!("{key}: {:?}", info.state);
/// }
/// # Ok::<(), keel_breaker::ConfigError>(())
/// ```
pub struct BreakerRegistry<K> {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    observer: Option<Arc<dyn Observer>>,
    breakers: RwLock<HashMap<K, CircuitBreaker>>,
}

impl<K> fmt::Debug for BreakerRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("config", &self.config)
            .field("len", &self.read().len())
            .finish_non_exhaustive()
    }
}

impl<K> BreakerRegistry<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<K, CircuitBreaker>> {
        self.breakers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<K, CircuitBreaker>> {
        self.breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many breakers exist.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no breaker exists yet.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

impl<K> BreakerRegistry<K>
where
    K: Eq + Hash + Clone + fmt::Display,
{
    /// A registry whose breakers use `config`, the system clock and no observer.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field (checked once, here).
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        // Build one breaker now so that `get` can never fail later.
        CircuitBreaker::new(config.clone())?;
        Ok(Self {
            config,
            clock: Arc::new(SystemClock),
            observer: None,
            breakers: RwLock::new(HashMap::new()),
        })
    }

    /// The clock every breaker of this registry uses.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The observer every breaker of this registry reports to.
    #[must_use]
    pub fn with_observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The breaker for `key`, created Closed on first use.
    pub fn get<Q>(&self, key: &Q) -> CircuitBreaker
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(breaker) = self.read().get(key) {
            return breaker.clone();
        }
        let key = key.to_owned();
        let mut breakers = self.write();
        match breakers.get::<K>(&key) {
            Some(breaker) => breaker.clone(),
            None => {
                let breaker = self.build(&key);
                breakers.insert(key, breaker.clone());
                breaker
            }
        }
    }

    fn build(&self, key: &K) -> CircuitBreaker {
        let mut builder = CircuitBreaker::builder(self.config.clone())
            .name(key.to_string())
            .shared_clock(Arc::clone(&self.clock));
        if let Some(observer) = &self.observer {
            builder = builder.shared_observer(Arc::clone(observer));
        }
        // `new` built one from the same config, so this cannot fail; the
        // default is a fallback that keeps library code free of panics.
        builder.build().unwrap_or_default()
    }

    /// The breaker for `key`, if it exists.
    pub fn find<Q>(&self, key: &Q) -> Option<CircuitBreaker>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.read().get(key).cloned()
    }

    /// Forgets the breaker for `key`; handles already given out keep working.
    pub fn remove<Q>(&self, key: &Q) -> Option<CircuitBreaker>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.write().remove(key)
    }

    /// Every key with its breaker.
    pub fn breakers(&self) -> Vec<(K, CircuitBreaker)> {
        self.read()
            .iter()
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect()
    }

    /// Every key with a snapshot of its breaker, for health reporting.
    pub fn infos(&self) -> Vec<(K, Info)> {
        self.breakers()
            .into_iter()
            .map(|(k, b)| (k, b.info()))
            .collect()
    }
}
