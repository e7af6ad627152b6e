use tower_layer::Layer;

use super::{Breaker, CircuitBreaker};
use crate::classify::HttpClassifier;

/// Wraps services in a [`CircuitBreaker`] that all share one [`Breaker`].
///
/// The layer holds a handle to the breaker and the classifier, nothing
/// else: every service it builds reports to, and is guarded by, the same
/// circuit. By default it classifies HTTP ([`HttpClassifier`]), like
/// [`Breaker::layer`]; [`classifier`](Self::classifier) picks another rule,
/// e.g. [`ErrorsAsFailures`](crate::classify::ErrorsAsFailures) for a
/// service that is not HTTP.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = HttpClassifier> {
    breaker: Breaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer for `breaker` over HTTP: 5xx responses and errors are
    /// failures.
    pub fn new(breaker: Breaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: HttpClassifier::default(),
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Replaces the classifier that decides what counts as a failure.
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker the layer's services share.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::with_classifier(inner, self.breaker.clone(), self.classifier.clone())
    }
}
