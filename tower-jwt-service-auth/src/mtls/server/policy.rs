use std::collections::BTreeMap;
use std::time::SystemTime;

use super::Rejection;
use crate::jwt::ServiceIdentity;
use crate::mtls::{InvalidSpiffeId, PeerIdentity, SpiffeId};

/// Which callers a service accepts by certificate, and what each may do:
/// one trust domain, and a grant per calling service.
///
/// ```
/// use tower_jwt_service_auth::mtls::{PeerIdentity, PeerPolicy, Rejection, SpiffeId};
///
/// let policy = PeerPolicy::new("demo.local")
///     .unwrap()
///     .grant("order-service", ["read:users"]);
/// let peer = |id: &str| PeerIdentity::new(SpiffeId::parse(id).unwrap());
///
/// let caller = policy.authenticate(Some(&peer("spiffe://demo.local/order-service"))).unwrap();
/// assert_eq!(caller.service, "order-service");
/// assert_eq!(caller.permissions, ["read:users"]);
///
/// let other_domain = peer("spiffe://elsewhere.test/order-service");
/// assert_eq!(policy.authenticate(Some(&other_domain)), Err(Rejection::WrongTrustDomain));
/// let unknown = peer("spiffe://demo.local/billing-service");
/// assert_eq!(policy.authenticate(Some(&unknown)), Err(Rejection::UnknownPeer));
/// assert_eq!(policy.authenticate(None), Err(Rejection::MissingPeer));
/// ```
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    trust_domain: String,
    grants: BTreeMap<String, Vec<String>>,
}

impl PeerPolicy {
    /// A policy for callers of `trust_domain` (e.g. `demo.local`), which
    /// grants no one anything yet. Refused when `trust_domain` is not a
    /// valid SPIFFE trust domain.
    pub fn new(trust_domain: &str) -> Result<PeerPolicy, InvalidSpiffeId> {
        // A trust domain is valid exactly when the ID of the domain itself is.
        SpiffeId::parse(&format!("spiffe://{trust_domain}"))?;
        Ok(PeerPolicy {
            trust_domain: trust_domain.to_owned(),
            grants: BTreeMap::new(),
        })
    }

    /// Accepts `service` and grants it these permissions (added to any
    /// granted before). An empty list accepts the caller with no
    /// permission.
    pub fn grant<I, S>(mut self, service: impl Into<String>, permissions: I) -> PeerPolicy
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let granted = self.grants.entry(service.into()).or_default();
        for permission in permissions {
            let permission = permission.into();
            if !granted.contains(&permission) {
                granted.push(permission);
            }
        }
        self
    }

    /// The trust domain accepted.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The caller `peer` is here, with its grant, or why it is refused.
    pub fn authenticate(&self, peer: Option<&PeerIdentity>) -> Result<ServiceIdentity, Rejection> {
        let peer = peer.ok_or(Rejection::MissingPeer)?;
        if peer.trust_domain() != self.trust_domain {
            return Err(Rejection::WrongTrustDomain);
        }
        let service = peer.service().ok_or(Rejection::UnknownPeer)?;
        let permissions = self.grants.get(service).ok_or(Rejection::UnknownPeer)?;
        Ok(ServiceIdentity {
            service: service.to_owned(),
            permissions: permissions.clone(),
            token_id: None,
            expires_at: SystemTime::now(),
        })
    }
}
