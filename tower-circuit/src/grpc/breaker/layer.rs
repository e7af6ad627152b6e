use tower_layer::Layer;

use super::GrpcCircuitBreaker;
use crate::breaker::Breaker;
use crate::grpc::ServerCodesAsFailures;

/// Wraps gRPC client services in a [`GrpcCircuitBreaker`] that all share
/// one [`Breaker`]. Built by [`Breaker::grpc_layer`].
///
/// The layer holds a handle to the breaker and the code classifier,
/// nothing else. By default server-side codes are failures
/// ([`ServerCodesAsFailures`]); [`classifier`](Self::classifier) picks
/// another rule.
#[derive(Debug, Clone)]
pub struct GrpcBreakerLayer<C = ServerCodesAsFailures> {
    breaker: Breaker,
    classifier: C,
}

impl GrpcBreakerLayer {
    /// A layer for `breaker` with the default classifier.
    pub fn new(breaker: Breaker) -> Self {
        GrpcBreakerLayer {
            breaker,
            classifier: ServerCodesAsFailures,
        }
    }
}

impl<C> GrpcBreakerLayer<C> {
    /// Replaces the rule that decides what each status code means: a
    /// [`ClassifyCode`](crate::grpc::ClassifyCode), e.g. a closure
    /// `Fn(tonic::Code) -> Outcome`.
    pub fn classifier<C2>(self, classifier: C2) -> GrpcBreakerLayer<C2> {
        GrpcBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker the layer's services share.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for GrpcBreakerLayer<C> {
    type Service = GrpcCircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcCircuitBreaker::with_classifier(inner, self.breaker.clone(), self.classifier.clone())
    }
}
