use tower::Layer;

use super::GrpcErrors;

/// Answers gRPC requests in gRPC whatever the layers inside it answered;
/// see the [module docs](super). Outermost in a stack, so that every
/// layer that can refuse is inside it.
#[derive(Debug, Clone, Default)]
pub struct GrpcErrorsLayer {
    _private: (),
}

impl GrpcErrorsLayer {
    /// The layer; it has nothing to configure.
    pub fn new() -> Self {
        GrpcErrorsLayer::default()
    }
}

impl<S> Layer<S> for GrpcErrorsLayer {
    type Service = GrpcErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcErrors::new(inner)
    }
}
