use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::{Fallback, FallbackOn, Shared};
use crate::breaker::Breaker;

/// Wraps services in a [`Fallback`].
#[derive(Clone)]
pub struct FallbackLayer<X, H> {
    extract: X,
    handler: H,
    on: FallbackOn,
    breaker: Option<Breaker>,
}

impl<X, H> FallbackLayer<X, H> {
    /// `extract` keeps what the answer needs from each request; `handler`
    /// builds the answer from it and the error, or returns `None`.
    pub fn new(extract: X, handler: H) -> Self {
        FallbackLayer {
            extract,
            handler,
            on: FallbackOn::CircuitOpen,
            breaker: None,
        }
    }

    /// Answers for every error, not only an open circuit.
    pub fn on_any_error(mut self) -> Self {
        self.on = FallbackOn::AnyError;
        self
    }

    /// Counts every answer in `breaker`'s metrics and reports it to its hook.
    pub fn counted_in(mut self, breaker: &Breaker) -> Self {
        self.breaker = Some(breaker.clone());
        self
    }
}

impl<X, H> fmt::Debug for FallbackLayer<X, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("on", &self.on)
            .field("breaker", &self.breaker.as_ref().map(Breaker::name))
            .finish_non_exhaustive()
    }
}

impl<S, X: Clone, H: Clone> Layer<S> for FallbackLayer<X, H> {
    type Service = Fallback<S, X, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback {
            inner,
            extract: self.extract.clone(),
            shared: Arc::new(Shared {
                handler: self.handler.clone(),
                on: self.on,
                breaker: self.breaker.clone(),
            }),
        }
    }
}
