//! One breaker per key: per host, per tenant, per route.
//!
//! A single breaker in front of a pool of upstream hosts opens for all of
//! them when one is down. [`KeyedBreakers`] keeps a breaker per key, all
//! built from one template (configuration and hooks), named
//! `"{template name}/{key}"`. The map is bounded: when it is full, breakers
//! idle for longer than the idle timeout go first, then the least recently
//! used one, so a stream of distinct keys cannot grow memory without bound.
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_circuit::breaker::Breaker;
//! use tower_circuit::classify::ErrorsAsFailures;
//! use tower_circuit::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer};
//! use tower_circuit::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breakers = KeyedBreakers::new(Breaker::builder("upstream"))?;
//! let service = ServiceBuilder::new()
//!     // Not HTTP here, so every `Err` is a failure (HTTP is the default).
//!     .layer(
//!         KeyedCircuitBreakerLayer::new(breakers.clone(), |host: &&'static str| *host)
//!             .classifier(ErrorsAsFailures),
//!     )
//!     .service(service_fn(|host: &'static str| async move { Ok::<_, BoxError>(host.len()) }));
//!
//! service.clone().oneshot("a.internal").await?;
//! service.oneshot("b.internal").await?;
//! assert_eq!(breakers.len(), 2);
//! assert!(breakers.contains(&"a.internal"));
//! # Ok(())
//! # }
//! ```

mod layer;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

pub use self::layer::KeyedCircuitBreakerLayer;

use crate::BoxError;
use crate::breaker::future::ResponseFuture;
use crate::breaker::guarded_call;
use crate::breaker::window::lock;
use crate::breaker::{Breaker, BreakerBuilder, BreakerConfigError, BreakerStats};
use crate::classify::{Classifier, HttpClassifier, MakeClassifier};

/// The default bound on the number of keys.
pub const DEFAULT_MAX_KEYS: usize = 1024;
/// The largest `max_keys` accepted: every key holds a breaker (up to a
/// few hundred KB with the largest windows), so the bound must be one
/// memory can honour.
pub const MAX_KEYS: usize = 100_000;
/// The default time after which an unused breaker may be evicted.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A bounded map from keys to breakers that share one template.
///
/// Cloning is cheap; clones share the map.
pub struct KeyedBreakers<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    template: BreakerBuilder,
    max_keys: usize,
    idle_timeout: Duration,
    map: Mutex<HashMap<K, Entry>>,
}

struct Entry {
    breaker: Breaker,
    last_used: Instant,
}

impl<K> Clone for KeyedBreakers<K> {
    fn clone(&self) -> Self {
        KeyedBreakers {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedBreakers<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakers")
            .field("name", self.inner.template.name())
            .field("max_keys", &self.inner.max_keys)
            .field("idle_timeout", &self.inner.idle_timeout)
            .field("len", &lock(&self.inner.map).len())
            .finish()
    }
}

impl<K> KeyedBreakers<K>
where
    K: Hash + Eq + Clone + fmt::Display,
{
    /// Breakers built from `template`, at most [`DEFAULT_MAX_KEYS`] of them,
    /// evictable after [`DEFAULT_IDLE_TIMEOUT`] unused. Validates the
    /// template's configuration now, so that no call can meet an error later.
    pub fn new(template: BreakerBuilder) -> Result<Self, BreakerConfigError> {
        KeyedBreakers::with_limits(template, DEFAULT_MAX_KEYS, DEFAULT_IDLE_TIMEOUT)
    }

    /// Like [`new`](KeyedBreakers::new) with explicit bounds; `max_keys` is
    /// at least 1 and at most [`MAX_KEYS`] (else
    /// [`BreakerConfigError::TooManyKeys`]).
    pub fn with_limits(
        template: BreakerBuilder,
        max_keys: usize,
        idle_timeout: Duration,
    ) -> Result<Self, BreakerConfigError> {
        template.validate()?;
        if max_keys > MAX_KEYS {
            return Err(BreakerConfigError::TooManyKeys {
                max_keys,
                max: MAX_KEYS,
            });
        }
        Ok(KeyedBreakers {
            inner: Arc::new(Inner {
                template,
                max_keys: max_keys.max(1),
                idle_timeout,
                map: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The breaker for `key`, created if missing (evicting if full).
    pub fn get(&self, key: &K) -> Breaker {
        let now = Instant::now();
        let mut map = lock(&self.inner.map);
        if let Some(entry) = map.get_mut(key) {
            entry.last_used = now;
            return entry.breaker.clone();
        }
        if map.len() >= self.inner.max_keys {
            self.make_room(&mut map, now);
        }
        let name: Arc<str> = format!("{}/{}", self.inner.template.name(), key).into();
        let breaker = self.inner.template.build_validated(name);
        map.insert(
            key.clone(),
            Entry {
                breaker: breaker.clone(),
                last_used: now,
            },
        );
        breaker
    }

    fn make_room(&self, map: &mut HashMap<K, Entry>, now: Instant) {
        let idle = self.inner.idle_timeout;
        map.retain(|_, e| now.saturating_duration_since(e.last_used) < idle);
        if map.len() >= self.inner.max_keys {
            let oldest = map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            if let Some(key) = oldest {
                map.remove(&key);
            }
        }
    }

    /// Removes every breaker unused for the idle timeout; returns how many.
    pub fn evict_idle(&self) -> usize {
        let now = Instant::now();
        let idle = self.inner.idle_timeout;
        let mut map = lock(&self.inner.map);
        let before = map.len();
        map.retain(|_, e| now.saturating_duration_since(e.last_used) < idle);
        before - map.len()
    }

    /// Whether `key` has a breaker now.
    pub fn contains(&self, key: &K) -> bool {
        lock(&self.inner.map).contains_key(key)
    }

    /// How many keys have a breaker.
    pub fn len(&self) -> usize {
        lock(&self.inner.map).len()
    }

    /// Whether no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of every breaker, sorted by name.
    pub fn snapshot(&self) -> Vec<BreakerStats> {
        let breakers: Vec<Breaker> = lock(&self.inner.map)
            .values()
            .map(|e| e.breaker.clone())
            .collect();
        let mut all: Vec<BreakerStats> = breakers.iter().map(Breaker::stats).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// Lets a [`Registry`](crate::registry::Registry) hold keyed breakers of any key type.
pub(crate) trait Snapshots: Send + Sync {
    fn snapshots(&self) -> Vec<BreakerStats>;
    fn find(&self, name: &str) -> Option<Breaker>;
}

impl<K> Snapshots for KeyedBreakers<K>
where
    K: Hash + Eq + Clone + fmt::Display + Send + 'static,
{
    fn snapshots(&self) -> Vec<BreakerStats> {
        self.snapshot()
    }

    fn find(&self, name: &str) -> Option<Breaker> {
        lock(&self.inner.map)
            .values()
            .find(|e| e.breaker.name() == name)
            .map(|e| e.breaker.clone())
    }
}

/// Guards an inner service with one breaker per key. Built by
/// [`KeyedCircuitBreakerLayer`].
pub struct KeyedCircuitBreaker<S, K, F, C = HttpClassifier> {
    inner: S,
    breakers: KeyedBreakers<K>,
    key: F,
    classifier: C,
}

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedCircuitBreaker<S, K, F, C> {
    fn clone(&self) -> Self {
        KeyedCircuitBreaker {
            inner: self.inner.clone(),
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedCircuitBreaker<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C> KeyedCircuitBreaker<S, K, F, C> {
    /// The breakers, one per key.
    pub fn breakers(&self) -> &KeyedBreakers<K> {
        &self.breakers
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedCircuitBreaker<S, K, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    K: Hash + Eq + Clone + fmt::Display,
    F: Fn(&Req) -> K,
    C: MakeClassifier<Req>,
    C::Classifier: Classifier<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C::Classifier>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let breaker = self.breakers.get(&(self.key)(&req));
        guarded_call(&breaker, &self.classifier, &mut self.inner, req)
    }
}

/// A key function for HTTP clients: the request's authority
/// (`host:port`), from its URI or else its `Host` header.
///
/// Cloning an [`Authority`](http::uri::Authority) shares its bytes, so the
/// key costs no allocation for absolute-form URIs.
pub fn authority<B>(req: &http::Request<B>) -> http::uri::Authority {
    if let Some(authority) = req.uri().authority() {
        return authority.clone();
    }
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| http::uri::Authority::from_static("unknown"))
}
