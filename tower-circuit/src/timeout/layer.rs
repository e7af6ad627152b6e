use tower_layer::Layer;

use super::RequestTimeout;
use super::policy::ByMethod;

/// Wraps services in a [`RequestTimeout`].
#[derive(Debug, Clone)]
pub struct RequestTimeoutLayer<P = ByMethod> {
    policy: P,
}

impl RequestTimeoutLayer {
    /// 3 s for reads, 10 s for writes (see [`ByMethod`]).
    pub fn by_method() -> Self {
        RequestTimeoutLayer::new(ByMethod::default())
    }
}

impl<P> RequestTimeoutLayer<P> {
    /// Timeouts chosen by `policy`: a [`ByMethod`], a
    /// [`Fixed`](super::Fixed), or a closure `Fn(&Request<B>) -> Duration`.
    pub fn new(policy: P) -> Self {
        RequestTimeoutLayer { policy }
    }
}

impl<S, P: Clone> Layer<S> for RequestTimeoutLayer<P> {
    type Service = RequestTimeout<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout::new(inner, self.policy.clone())
    }
}
