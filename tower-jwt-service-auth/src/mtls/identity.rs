//! [`SpiffeId`], parsed strictly, and [`PeerIdentity`], the identity a TLS
//! handshake established.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// `spiffe://`, lowercase: the spec allows no other spelling.
const SCHEME: &str = "spiffe://";

/// The longest SPIFFE ID, in bytes (SPIFFE ID spec, §2.3).
const MAX_LEN: usize = 2048;

/// The longest trust domain name, in bytes (SPIFFE ID spec, §2.1).
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A SPIFFE ID, `spiffe://<trust-domain>/<path>`, accepted only in its one
/// valid spelling.
///
/// The trust domain is lowercase letters, digits, `.`, `-` and `_`; the
/// path (possibly empty) is `/`-separated segments of letters, digits,
/// `.`, `-` and `_`, none empty, `.` or `..`. Nothing else is accepted:
/// no uppercase scheme or trust domain, no port, user info, query,
/// fragment or percent-encoding, no trailing `/`, and at most 2048
/// bytes. Two IDs are equal exactly when their texts are.
///
/// Cloning is cheap (the text is shared), so an ID can go into every
/// request's extensions.
///
/// ```
/// use tower_jwt_service_auth::mtls::SpiffeId;
///
/// let id: SpiffeId = "spiffe://demo.local/order-service".parse().unwrap();
/// assert_eq!(id.trust_domain(), "demo.local");
/// assert_eq!(id.path(), "/order-service");
/// assert_eq!(id.service(), Some("order-service"));
/// assert_eq!(id.to_string(), "spiffe://demo.local/order-service");
///
/// // Paths of several segments are valid SPIFFE IDs, but name no service
/// // in this crate's convention of one segment per service.
/// let id = SpiffeId::parse("spiffe://demo.local/ns/prod/sa/orders").unwrap();
/// assert_eq!(id.service(), None);
///
/// assert!(SpiffeId::parse("spiffe://Demo.local/order-service").is_err());
/// assert!(SpiffeId::parse("spiffe://demo.local/order-service/").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    text: Arc<str>,
    /// Where the trust domain ends and the path begins, in `text`.
    path_start: usize,
}

impl SpiffeId {
    /// Parses `text` as a SPIFFE ID, strictly (see the type's docs).
    pub fn parse(text: &str) -> Result<SpiffeId, InvalidSpiffeId> {
        let path_start = validate(text).map_err(|kind| InvalidSpiffeId { kind })?;
        Ok(SpiffeId {
            text: Arc::from(text),
            path_start,
        })
    }

    /// `spiffe://<trust_domain>/<service>`: the ID of a service in this
    /// crate's convention, one path segment naming the service.
    ///
    /// Refused when either part breaks the grammar, or `service` is not
    /// exactly one segment (it is empty or holds a `/`).
    ///
    /// ```
    /// use tower_jwt_service_auth::mtls::SpiffeId;
    ///
    /// let id = SpiffeId::for_service("demo.local", "user-service").unwrap();
    /// assert_eq!(id.as_str(), "spiffe://demo.local/user-service");
    /// assert!(SpiffeId::for_service("demo.local", "a/b").is_err());
    /// ```
    pub fn for_service(trust_domain: &str, service: &str) -> Result<SpiffeId, InvalidSpiffeId> {
        if service.contains('/') {
            return Err(InvalidSpiffeId {
                kind: Kind::NotOneSegment,
            });
        }
        SpiffeId::parse(&format!("{SCHEME}{trust_domain}/{service}"))
    }

    /// The trust domain: what a CA vouches for, e.g. `demo.local`.
    pub fn trust_domain(&self) -> &str {
        &self.text[SCHEME.len()..self.path_start]
    }

    /// The path: empty, or `/` followed by segments, e.g. `/order-service`.
    pub fn path(&self) -> &str {
        &self.text[self.path_start..]
    }

    /// The service this ID names when its path is exactly one segment
    /// (`spiffe://demo.local/order-service` names `order-service`); `None`
    /// for an empty path or a path of several segments.
    pub fn service(&self) -> Option<&str> {
        let service = self.path().strip_prefix('/')?;
        // Segments are never empty, so one with no `/` is the whole path.
        (!service.contains('/')).then_some(service)
    }

    /// The whole ID, `spiffe://...`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for SpiffeId {
    /// The URI as it was parsed. The grammar has no control characters,
    /// spaces or quotes, so it is safe in a log line as it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SpiffeId").field(&&*self.text).finish()
    }
}

impl FromStr for SpiffeId {
    type Err = InvalidSpiffeId;

    fn from_str(text: &str) -> Result<SpiffeId, InvalidSpiffeId> {
        SpiffeId::parse(text)
    }
}

impl AsRef<str> for SpiffeId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// Checks `text` against the grammar; returns where the path starts.
fn validate(text: &str) -> Result<usize, Kind> {
    if text.is_empty() {
        return Err(Kind::Empty);
    }
    // Before anything else, so every later step walks a bounded input.
    if text.len() > MAX_LEN {
        return Err(Kind::TooLong);
    }
    let rest = text.strip_prefix(SCHEME).ok_or(Kind::Scheme)?;
    // These characters are in neither part's alphabet; naming them says
    // more than "bad character" would.
    if rest.contains('?') {
        return Err(Kind::Query);
    }
    if rest.contains('#') {
        return Err(Kind::Fragment);
    }
    if rest.contains('%') {
        return Err(Kind::PercentEncoded);
    }
    let trust_domain_len = rest.find('/').unwrap_or(rest.len());
    let (trust_domain, path) = rest.split_at(trust_domain_len);
    validate_trust_domain(trust_domain)?;
    if !path.is_empty() {
        // `path` starts with `/`: each segment follows one.
        for segment in path[1..].split('/') {
            validate_segment(segment)?;
        }
    }
    Ok(SCHEME.len() + trust_domain_len)
}

fn validate_trust_domain(trust_domain: &str) -> Result<(), Kind> {
    if trust_domain.is_empty() {
        return Err(Kind::EmptyTrustDomain);
    }
    if trust_domain.contains('@') {
        return Err(Kind::UserInfo);
    }
    if trust_domain.contains(':') {
        return Err(Kind::Port);
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(Kind::TrustDomainTooLong);
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b);
    if !trust_domain.bytes().all(allowed) {
        return Err(Kind::TrustDomainCharacter);
    }
    Ok(())
}

fn validate_segment(segment: &str) -> Result<(), Kind> {
    match segment {
        "" => Err(Kind::EmptySegment),
        "." | ".." => Err(Kind::DotSegment),
        _ => {
            let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
            if segment.bytes().all(allowed) {
                Ok(())
            } else {
                Err(Kind::PathCharacter)
            }
        }
    }
}

/// A text is not a SPIFFE ID. It says which rule was broken, never the
/// text itself: the text came from a peer's certificate, and may be long
/// or hold anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSpiffeId {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    TooLong,
    Scheme,
    Query,
    Fragment,
    PercentEncoded,
    EmptyTrustDomain,
    UserInfo,
    Port,
    TrustDomainTooLong,
    TrustDomainCharacter,
    EmptySegment,
    DotSegment,
    PathCharacter,
    NotOneSegment,
}

impl InvalidSpiffeId {
    /// A short label for logs and metrics, e.g. `port` or `dot_segment`.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            Kind::Empty => "empty",
            Kind::TooLong => "too_long",
            Kind::Scheme => "scheme",
            Kind::Query => "query",
            Kind::Fragment => "fragment",
            Kind::PercentEncoded => "percent_encoded",
            Kind::EmptyTrustDomain => "empty_trust_domain",
            Kind::UserInfo => "user_info",
            Kind::Port => "port",
            Kind::TrustDomainTooLong => "trust_domain_too_long",
            Kind::TrustDomainCharacter => "trust_domain_character",
            Kind::EmptySegment => "empty_segment",
            Kind::DotSegment => "dot_segment",
            Kind::PathCharacter => "path_character",
            Kind::NotOneSegment => "not_one_segment",
        }
    }
}

impl fmt::Display for InvalidSpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.kind {
            Kind::Empty => "it is empty".to_owned(),
            Kind::TooLong => format!("it is longer than {MAX_LEN} bytes"),
            Kind::Scheme => "it does not start with `spiffe://`".to_owned(),
            Kind::Query => "it has a query (`?`)".to_owned(),
            Kind::Fragment => "it has a fragment (`#`)".to_owned(),
            Kind::PercentEncoded => "it has percent-encoding (`%`)".to_owned(),
            Kind::EmptyTrustDomain => "its trust domain is empty".to_owned(),
            Kind::UserInfo => "it has user info (`@`)".to_owned(),
            Kind::Port => "it has a port (`:`)".to_owned(),
            Kind::TrustDomainTooLong => {
                format!("its trust domain is longer than {MAX_TRUST_DOMAIN_LEN} bytes")
            }
            Kind::TrustDomainCharacter => "its trust domain has a character other than \
                                           lowercase letters, digits, `.`, `-` and `_`"
                .to_owned(),
            Kind::EmptySegment => {
                "its path has an empty segment (`//` or a trailing `/`)".to_owned()
            }
            Kind::DotSegment => "its path has a `.` or `..` segment".to_owned(),
            Kind::PathCharacter => "its path has a character other than letters, digits, \
                                    `.`, `-` and `_`"
                .to_owned(),
            Kind::NotOneSegment => "a service name must be one path segment".to_owned(),
        };
        write!(f, "not a valid SPIFFE ID: {why}")
    }
}

impl std::error::Error for InvalidSpiffeId {}

/// The identity the peer of a connection proved in the TLS handshake: the
/// SPIFFE ID of the client certificate that chained to the trusted CA.
///
/// A TLS server puts one into the extensions of every request on the
/// connection, so layers and handlers can ask who is calling without
/// seeing TLS. Cheap to clone.
///
/// ```
/// use tower_jwt_service_auth::mtls::{PeerIdentity, SpiffeId};
///
/// let peer = PeerIdentity::new(SpiffeId::parse("spiffe://demo.local/order-service").unwrap());
/// assert_eq!(peer.service(), Some("order-service"));
/// assert_eq!(peer.to_string(), "spiffe://demo.local/order-service");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    id: SpiffeId,
}

impl PeerIdentity {
    /// The identity of a peer whose certificate carries `id`.
    pub fn new(id: SpiffeId) -> PeerIdentity {
        PeerIdentity { id }
    }

    /// The peer's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// The peer's trust domain ([`SpiffeId::trust_domain`]).
    pub fn trust_domain(&self) -> &str {
        self.id.trust_domain()
    }

    /// The peer's service name, when its ID names one
    /// ([`SpiffeId::service`]).
    pub fn service(&self) -> Option<&str> {
        self.id.service()
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.id, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> &'static str {
        match SpiffeId::parse(text) {
            Ok(id) => panic!("{text:?} was accepted as {id:?}"),
            Err(e) => e.reason(),
        }
    }

    #[test]
    fn accepts_ids_of_the_grammar() {
        for (text, trust_domain, path) in [
            (
                "spiffe://demo.local/user-service",
                "demo.local",
                "/user-service",
            ),
            ("spiffe://demo.local", "demo.local", ""),
            ("spiffe://a_b-c.9/x/Y.z/_-", "a_b-c.9", "/x/Y.z/_-"),
            ("spiffe://td/...", "td", "/..."),
            ("spiffe://td/.hidden", "td", "/.hidden"),
        ] {
            let id = SpiffeId::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(id.trust_domain(), trust_domain, "{text}");
            assert_eq!(id.path(), path, "{text}");
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn service_is_the_single_path_segment() {
        let service = |text: &str| SpiffeId::parse(text).unwrap().service().map(str::to_owned);
        assert_eq!(
            service("spiffe://demo.local/order-service").as_deref(),
            Some("order-service")
        );
        assert_eq!(service("spiffe://demo.local"), None);
        assert_eq!(service("spiffe://demo.local/ns/order-service"), None);
    }

    #[test]
    fn refuses_other_schemes_and_spellings_of_it() {
        for text in [
            "https://demo.local/x",
            "SPIFFE://demo.local/x",
            "spiffe:/demo.local/x",
            "spiffe:demo.local",
            " spiffe://demo.local/x",
            "demo.local/x",
        ] {
            assert_eq!(reason(text), "scheme", "{text}");
        }
        assert_eq!(reason(""), "empty");
    }

    #[test]
    fn refuses_a_bad_trust_domain() {
        assert_eq!(reason("spiffe://"), "empty_trust_domain");
        assert_eq!(reason("spiffe:///x"), "empty_trust_domain");
        assert_eq!(reason("spiffe://Demo.local/x"), "trust_domain_character");
        assert_eq!(reason("spiffe://demo local/x"), "trust_domain_character");
        assert_eq!(reason("spiffe://démo/x"), "trust_domain_character");
        assert_eq!(reason("spiffe://demo\n/x"), "trust_domain_character");
        assert_eq!(reason("spiffe://demo.local:8443/x"), "port");
        assert_eq!(reason("spiffe://user@demo.local/x"), "user_info");
        let long = format!("spiffe://{}/x", "a".repeat(256));
        assert_eq!(reason(&long), "trust_domain_too_long");
        let longest = format!("spiffe://{}/x", "a".repeat(255));
        assert!(SpiffeId::parse(&longest).is_ok());
    }

    #[test]
    fn refuses_a_bad_path() {
        assert_eq!(reason("spiffe://td/"), "empty_segment");
        assert_eq!(reason("spiffe://td/a/"), "empty_segment");
        assert_eq!(reason("spiffe://td//a"), "empty_segment");
        assert_eq!(reason("spiffe://td/a//b"), "empty_segment");
        assert_eq!(reason("spiffe://td/."), "dot_segment");
        assert_eq!(reason("spiffe://td/a/../b"), "dot_segment");
        assert_eq!(reason("spiffe://td/a b"), "path_character");
        assert_eq!(reason("spiffe://td/a:b"), "path_character");
        assert_eq!(reason("spiffe://td/ä"), "path_character");
        assert_eq!(reason("spiffe://td/a\u{0}"), "path_character");
    }

    #[test]
    fn refuses_query_fragment_and_percent_encoding() {
        assert_eq!(reason("spiffe://td/a?b=c"), "query");
        assert_eq!(reason("spiffe://td?x"), "query");
        assert_eq!(reason("spiffe://td/a#b"), "fragment");
        assert_eq!(reason("spiffe://td/a%2Fb"), "percent_encoded");
    }

    #[test]
    fn refuses_ids_longer_than_2048_bytes() {
        let prefix = "spiffe://td/";
        let at_limit = format!("{prefix}{}", "a".repeat(MAX_LEN - prefix.len()));
        assert_eq!(at_limit.len(), MAX_LEN);
        assert!(SpiffeId::parse(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(reason(&over), "too_long");
    }

    #[test]
    fn errors_do_not_repeat_the_input() {
        let e = SpiffeId::parse("spiffe://td/secret\nline").unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.starts_with("not a valid SPIFFE ID: "), "{text}");
    }

    #[test]
    fn for_service_builds_a_one_segment_id() {
        let id = SpiffeId::for_service("demo.local", "user-service").unwrap();
        assert_eq!(id.as_str(), "spiffe://demo.local/user-service");
        assert_eq!(id.service(), Some("user-service"));
        let refused = |td: &str, service: &str| SpiffeId::for_service(td, service).unwrap_err();
        assert_eq!(refused("demo.local", "a/b").reason(), "not_one_segment");
        assert_eq!(refused("demo.local", "").reason(), "empty_segment");
        assert_eq!(refused("Demo", "x").reason(), "trust_domain_character");
        assert_eq!(refused("demo.local", "..").reason(), "dot_segment");
    }

    #[test]
    fn peer_identity_is_cheap_to_clone_and_shareable() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<PeerIdentity>();
        let peer = PeerIdentity::new(SpiffeId::parse("spiffe://td/svc").unwrap());
        let copy = peer.clone();
        // One allocation, shared: the clone points at the same text.
        assert!(Arc::ptr_eq(&peer.id.text, &copy.id.text));
        assert_eq!(copy.service(), Some("svc"));
        assert_eq!(copy.trust_domain(), "td");
        assert_eq!(copy.to_string(), "spiffe://td/svc");
    }
}
