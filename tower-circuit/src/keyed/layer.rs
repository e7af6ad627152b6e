use std::fmt;

use tower_layer::Layer;

use super::{KeyedBreakers, KeyedCircuitBreaker};
use crate::classify::HttpClassifier;

/// Wraps services in a [`KeyedCircuitBreaker`]: `key` picks each request's
/// breaker from the shared [`KeyedBreakers`].
#[derive(Clone)]
pub struct KeyedCircuitBreakerLayer<K, F, C = HttpClassifier> {
    breakers: KeyedBreakers<K>,
    key: F,
    classifier: C,
}

impl<K, F> KeyedCircuitBreakerLayer<K, F> {
    /// Classifies HTTP, like [`Breaker::layer`](crate::breaker::Breaker::layer):
    /// 5xx responses and errors are failures. For a service that is not
    /// HTTP, pass [`ErrorsAsFailures`](crate::classify::ErrorsAsFailures)
    /// (or your own rule) to [`classifier`](Self::classifier).
    pub fn new(breakers: KeyedBreakers<K>, key: F) -> Self {
        KeyedCircuitBreakerLayer {
            breakers,
            key,
            classifier: HttpClassifier::default(),
        }
    }
}

impl<K, F, C> KeyedCircuitBreakerLayer<K, F, C> {
    /// Replaces the classifier that decides what counts as a failure.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedCircuitBreakerLayer<K, F, C2> {
        KeyedCircuitBreakerLayer {
            breakers: self.breakers,
            key: self.key,
            classifier,
        }
    }
}

impl<K, F, C: fmt::Debug> fmt::Debug for KeyedCircuitBreakerLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("breakers", &self.breakers)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, F, C> {
    type Service = KeyedCircuitBreaker<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker {
            inner,
            breakers: self.breakers.clone(),
            key: self.key.clone(),
            classifier: self.classifier.clone(),
        }
    }
}
