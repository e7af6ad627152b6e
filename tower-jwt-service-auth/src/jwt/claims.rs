//! What a service token says.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The `typ` header of every service token, which verifiers pin (RFC 8725
/// §3.11): a token minted for another purpose with the same keys (a user
/// session, say) cannot pass as a service token.
pub const TOKEN_TYPE: &str = "service+jwt";

/// The claims of a service token, as signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The calling service.
    pub sub: String,
    /// Who minted the token: the calling service itself.
    pub iss: String,
    /// The service the token is for.
    pub aud: Audience,
    /// Issued at, in seconds since the Unix epoch.
    pub iat: u64,
    /// Not valid before, in seconds since the Unix epoch.
    pub nbf: u64,
    /// Expires at, in seconds since the Unix epoch.
    pub exp: u64,
    /// A unique token id.
    pub jti: String,
    /// Marks a service token; user tokens lack it.
    pub service: bool,
    /// What the caller may do, e.g. `read:users`.
    pub permissions: Vec<String>,
}

/// One audience (the default: a token per target service) or several.
///
/// One per target is what SPIFFE recommends: a token for several services
/// can be replayed by any one of them to the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single service.
    One(String),
    /// Several services.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `service` is among the audience.
    pub fn contains(&self, service: &str) -> bool {
        match self {
            Audience::One(one) => one == service,
            Audience::Many(many) => many.iter().any(|a| a == service),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}
