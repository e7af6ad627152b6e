use std::sync::Arc;

use tower_layer::Layer;

use super::{PeerAuth, PeerAuthStats, PeerPolicy};

/// Authenticates callers by their client certificate alone, with the
/// permissions `policy` grants them; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct PeerAuthLayer {
    policy: Arc<PeerPolicy>,
    stats: PeerAuthStats,
}

impl PeerAuthLayer {
    /// Accepts the callers `policy` names, from its trust domain.
    pub fn new(policy: PeerPolicy) -> Self {
        PeerAuthLayer {
            policy: Arc::new(policy),
            stats: PeerAuthStats::default(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &PeerPolicy {
        &self.policy
    }

    /// The counters shared by every service this layer builds; keep a
    /// clone to read them after the layer is moved into a stack.
    pub fn stats(&self) -> PeerAuthStats {
        self.stats.clone()
    }
}

impl<S> Layer<S> for PeerAuthLayer {
    type Service = PeerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerAuth {
            inner,
            policy: Arc::clone(&self.policy),
            stats: self.stats.clone(),
        }
    }
}
