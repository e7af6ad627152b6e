//! `demo-services certs`: a CA and one leaf certificate per service, for
//! mutual TLS.
//!
//! [`create`] writes into a directory:
//!
//! - `ca.pem`, `ca.key.pem`: the CA, valid for [`CA_LIFETIME`], allowed
//!   to sign leaves and nothing else (path length 0);
//! - `<service>.pem`, `<service>.key.pem` for each of
//!   [`auth::SERVICES`] (the three services and
//!   `api-gateway`, the caller a person uses with curl): a leaf valid for
//!   the chosen lifetime, whose one URI SAN is the service's SPIFFE ID,
//!   plus DNS `localhost` and IP `127.0.0.1`, for both server and client
//!   authentication. The file holds the leaf alone: there is no
//!   intermediate, and every peer already trusts `ca.pem`;
//! - `certs.json`: the trust domain, so that [`renew`] keeps it.
//!
//! Keys are ECDSA P-256, which every TLS stack accepts (rustls and
//! webpki included), signed with ring. Every file is written to a
//! temporary name and renamed into place, so a service reloading its
//! certificate never reads half a file; private keys are created mode
//! `0600`, never readable by others, not even for a moment.
//!
//! [`renew`] issues new leaves (new keys, new serials) from the CA in
//! the directory, and refuses a trust domain other than the directory's:
//! renewing must never change who the services are.

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use time::OffsetDateTime;
use tower_jwt_service_auth::mtls::{InvalidSpiffeId, SpiffeId};

use crate::auth;

/// The trust domain when `--trust-domain` is not given: `.local` is for
/// names that never leave the local network (RFC 6762), so this one
/// cannot collide with a real organisation's.
pub const DEFAULT_TRUST_DOMAIN: &str = "demo.local";

/// The leaves' lifetime when `--ttl` is not given: short, as workload
/// certificates are, so a stolen key is useful for a day at most.
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(24 * 3600);

/// The shortest leaf lifetime: below a minute, a leaf could expire
/// between being written and being loaded.
pub const MIN_LEAF_TTL: Duration = Duration::from_secs(60);

/// The longest leaf lifetime (90 days, the most public CAs issue for):
/// these are workload certificates, meant to be renewed.
pub const MAX_LEAF_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// How long the CA is valid. Longer than any leaf, so renewing leaves
/// works for a year without redistributing `ca.pem`.
pub const CA_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// How far back `notBefore` is set, so a peer whose clock is slightly
/// behind does not refuse a fresh certificate.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The largest `ca.pem`, `ca.key.pem` or `certs.json` read back.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// The CA certificate's file name.
pub const CA_CERT: &str = "ca.pem";
/// The CA private key's file name.
pub const CA_KEY: &str = "ca.key.pem";
/// The file recording the directory's trust domain.
pub const METADATA: &str = "certs.json";

/// The file name of `service`'s leaf certificate.
pub fn cert_file(service: &str) -> String {
    format!("{service}.pem")
}

/// The file name of `service`'s private key.
pub fn key_file(service: &str) -> String {
    format!("{service}.key.pem")
}

/// What [`create`] or [`renew`] wrote.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The trust domain of every leaf.
    pub trust_domain: String,
    /// The files written, in the order they were written.
    pub files: Vec<PathBuf>,
    /// When the leaves expire.
    pub leaves_not_after: OffsetDateTime,
    /// When the CA expires.
    pub ca_not_after: OffsetDateTime,
}

/// Checks a trust domain name (lowercase letters, digits, `.`, `-`,
/// `_`), as the `--trust-domain` flag does.
pub fn check_trust_domain(name: &str) -> Result<(), InvalidSpiffeId> {
    // A trust domain is valid exactly when the ID of the domain itself is.
    SpiffeId::parse(&format!("spiffe://{name}")).map(|_| ())
}

/// Checks a leaf lifetime against [`MIN_LEAF_TTL`] and [`MAX_LEAF_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<(), CertsError> {
    if (MIN_LEAF_TTL..=MAX_LEAF_TTL).contains(&ttl) {
        Ok(())
    } else {
        Err(CertsError::Ttl(ttl))
    }
}

/// Writes a new CA and a leaf per service into `dir` (created if
/// missing), the leaves valid from `now` for `ttl`.
///
/// Refuses, writing nothing, when `dir` already holds a CA or a
/// `certs.json`: that is [`renew`]'s job, and a second CA would silently
/// split the services into two groups that do not trust each other.
pub fn create(
    dir: &Path,
    trust_domain: &str,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<Issued, CertsError> {
    check_ttl(ttl)?;
    check_trust_domain(trust_domain).map_err(CertsError::TrustDomain)?;
    for name in [CA_CERT, CA_KEY, METADATA] {
        let path = dir.join(name);
        if path.exists() {
            return Err(CertsError::Exists(path));
        }
    }
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca_params = ca_params(trust_domain, now);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_not_after = ca_params.not_after;
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaves = issue_leaves(&issuer, trust_domain, now, ttl)?;

    std::fs::create_dir_all(dir).map_err(|e| CertsError::io(dir, e))?;
    let metadata = serde_json::json!({ "trustDomain": trust_domain });
    // The CA key first and never over an existing file: of two `certs`
    // run at once into one directory, only one gets past this.
    let mut files = vec![
        write_file(dir, CA_KEY, ca_key.serialize_pem().as_bytes(), Kind::NewKey)?,
        write_file(dir, CA_CERT, ca_cert.pem().as_bytes(), Kind::NewPublic)?,
        write_file(
            dir,
            METADATA,
            format!("{metadata:#}\n").as_bytes(),
            Kind::NewPublic,
        )?,
    ];
    files.extend(write_leaves(dir, &leaves)?);
    Ok(Issued {
        trust_domain: trust_domain.to_owned(),
        files,
        leaves_not_after: now + ttl,
        ca_not_after,
    })
}

/// Issues new leaves (new keys, new serials) from the CA in `dir`, valid
/// from `now` for `ttl`, keeping the directory's trust domain.
///
/// Refused, writing nothing, when `dir` has no CA or no `certs.json`,
/// when `trust_domain` is given and is not the directory's, when the CA
/// key does not match the CA certificate, or when the CA expires before
/// the new leaves would.
pub fn renew(
    dir: &Path,
    trust_domain: Option<&str>,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<Issued, CertsError> {
    check_ttl(ttl)?;
    let ca_cert_path = dir.join(CA_CERT);
    let ca_key_path = dir.join(CA_KEY);
    let metadata_path = dir.join(METADATA);
    for path in [&ca_cert_path, &ca_key_path, &metadata_path] {
        if !path.exists() {
            return Err(CertsError::NoCa(path.clone()));
        }
    }
    let kept = read_trust_domain(&metadata_path)?;
    if let Some(asked) = trust_domain
        && asked != kept
    {
        return Err(CertsError::TrustDomainChanged {
            dir: kept,
            asked: asked.to_owned(),
        });
    }

    let bad_ca = |path: &Path, why: String| CertsError::BadCa {
        path: path.to_owned(),
        why,
    };
    let ca_key_pem = read_text(&ca_key_path)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| bad_ca(&ca_key_path, e.to_string()))?;
    let ca_pem = read_text(&ca_cert_path)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .map_err(|e| bad_ca(&ca_cert_path, e.to_string()))?;
    let ca = pem
        .parse_x509()
        .map_err(|e| bad_ca(&ca_cert_path, e.to_string()))?;
    if !ca.is_ca() {
        return Err(bad_ca(&ca_cert_path, "it is not a CA certificate".into()));
    }
    // A key from elsewhere would sign leaves that chain to no CA anyone has.
    if ca.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&ca_key) {
        return Err(bad_ca(
            &ca_key_path,
            format!("it is not the key of {}", ca_cert_path.display()),
        ));
    }
    let ca_not_after = ca.validity().not_after.to_datetime();
    if ca_not_after < now + ttl {
        return Err(CertsError::CaExpiresFirst { ca_not_after });
    }
    let issuer = Issuer::from_ca_cert_der(&pem.contents.as_slice().into(), &ca_key)
        .map_err(|e| bad_ca(&ca_cert_path, e.to_string()))?;
    let leaves = issue_leaves(&issuer, &kept, now, ttl)?;
    let files = write_leaves(dir, &leaves)?;
    Ok(Issued {
        trust_domain: kept,
        files,
        leaves_not_after: now + ttl,
        ca_not_after,
    })
}

// === certificates ===

fn ca_params(trust_domain: &str, now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("demo-services CA {trust_domain}"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "demo-services");
    // Path length 0: it signs leaves, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + CA_LIFETIME;
    params.serial_number = Some(random_serial());
    params
}

/// A service's leaf: its key pair and certificate, in PEM.
struct Leaf {
    service: &'static str,
    key_pem: String,
    cert_pem: String,
}

fn issue_leaves(
    issuer: &Issuer<'_, &KeyPair>,
    trust_domain: &str,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<Vec<Leaf>, CertsError> {
    auth::SERVICES
        .iter()
        .map(|&service| {
            let id =
                SpiffeId::for_service(trust_domain, service).map_err(CertsError::TrustDomain)?;
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let cert = leaf_params(service, &id, now, ttl)?.signed_by(&key, issuer)?;
            Ok(Leaf {
                service,
                key_pem: key.serialize_pem(),
                cert_pem: cert.pem(),
            })
        })
        .collect()
}

fn leaf_params(
    service: &str,
    id: &SpiffeId,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, service);
    // The SPIFFE ID is the identity; `localhost` and 127.0.0.1 let
    // clients that check host names (curl, a browser) reach a service
    // on this machine.
    params.subject_alt_names = vec![
        SanType::URI(Ia5String::try_from(id.as_str())?),
        SanType::DnsName(Ia5String::try_from("localhost")?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Every service both serves and calls.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + ttl;
    params.serial_number = Some(random_serial());
    Ok(params)
}

/// 16 random bytes, positive: unique without any state to keep.
fn random_serial() -> SerialNumber {
    use rand::RngExt;
    let mut bytes = rand::rng().random::<u128>().to_be_bytes();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

// === files ===

fn write_leaves(dir: &Path, leaves: &[Leaf]) -> Result<Vec<PathBuf>, CertsError> {
    let mut files = Vec::with_capacity(leaves.len() * 2);
    for leaf in leaves {
        // The key before the certificate: a reloader that notices the
        // certificate change then finds the key that goes with it.
        files.push(write_file(
            dir,
            &key_file(leaf.service),
            leaf.key_pem.as_bytes(),
            Kind::Key,
        )?);
        files.push(write_file(
            dir,
            &cert_file(leaf.service),
            leaf.cert_pem.as_bytes(),
            Kind::Public,
        )?);
    }
    Ok(files)
}

/// How a file is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Mode 0600, replacing any file of the name.
    Key,
    /// Mode 0644 (less the umask), replacing any file of the name.
    Public,
    /// Mode 0600, refused if a file of the name exists.
    NewKey,
    /// Mode 0644, refused if a file of the name exists.
    NewPublic,
}

/// Writes `bytes` to `dir/name` atomically: to a new temporary file in
/// `dir`, flushed to disk, then renamed (or, for a new file, linked) into
/// place, so readers see the old file or the new one, never a part.
fn write_file(dir: &Path, name: &str, bytes: &[u8], kind: Kind) -> Result<PathBuf, CertsError> {
    use rand::RngExt;
    let path = dir.join(name);
    let tmp = dir.join(format!(
        ".{name}.{}-{:08x}.tmp",
        std::process::id(),
        rand::rng().random::<u32>()
    ));
    let private = matches!(kind, Kind::Key | Kind::NewKey);
    let result = write_new(&tmp, bytes, private).and_then(|()| {
        if matches!(kind, Kind::NewKey | Kind::NewPublic) {
            // A hard link fails if `path` exists, where rename would replace it.
            std::fs::hard_link(&tmp, &path)
        } else {
            std::fs::rename(&tmp, &path)
        }
    });
    // Gone after a rename; after a link or a failure, it must go.
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(CertsError::Exists(path)),
        Err(e) => Err(CertsError::io(&path, e)),
    }
}

/// Creates `path` (which must not exist) with `bytes`, mode 0600 when
/// `private`, and flushes it to disk.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // The mode is given at creation, so the key is never readable by
    // others, even between creating and writing it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn read_text(path: &Path) -> Result<String, CertsError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| CertsError::io(path, e))?;
    let mut text = String::new();
    // One byte over the limit tells a file at the limit from a longer one.
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| CertsError::io(path, e))?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(CertsError::BadCa {
            path: path.to_owned(),
            why: format!("it is larger than {MAX_FILE_LEN} bytes"),
        });
    }
    Ok(text)
}

/// The trust domain `dir`'s certificates were issued for, as recorded in
/// its [`METADATA`] file: what a service accepting callers by certificate
/// alone (`--service-auth mtls`) trusts.
pub fn trust_domain(dir: &Path) -> Result<String, CertsError> {
    read_trust_domain(&dir.join(METADATA))
}

fn read_trust_domain(path: &Path) -> Result<String, CertsError> {
    let bad = |why: String| CertsError::BadCa {
        path: path.to_owned(),
        why,
    };
    let doc: serde_json::Value =
        serde_json::from_str(&read_text(path)?).map_err(|e| bad(e.to_string()))?;
    let name = doc["trustDomain"]
        .as_str()
        .ok_or_else(|| bad("no \"trustDomain\" string".into()))?;
    check_trust_domain(name).map_err(|e| bad(format!("trustDomain: {e}")))?;
    Ok(name.to_owned())
}

/// A date as `2026-01-31 23:59:59 UTC`, to the second, as in a
/// certificate.
#[derive(Debug, Clone, Copy)]
pub struct Utc(pub OffsetDateTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        write!(
            f,
            "{}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

// === errors ===

/// `certs` could not do what it was asked; nothing was changed unless
/// said otherwise.
#[derive(Debug)]
pub enum CertsError {
    /// A plain `certs` found a CA (or its metadata) in the directory.
    Exists(PathBuf),
    /// `--renew` found no CA (or no metadata) in the directory.
    NoCa(PathBuf),
    /// `--renew` was asked for a trust domain other than the directory's.
    TrustDomainChanged {
        /// The directory's trust domain.
        dir: String,
        /// The one asked for.
        asked: String,
    },
    /// The CA expires before leaves issued now would.
    CaExpiresFirst {
        /// When the CA expires.
        ca_not_after: OffsetDateTime,
    },
    /// The CA, its key or the metadata could not be used.
    BadCa {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Not a valid trust domain name.
    TrustDomain(InvalidSpiffeId),
    /// A leaf lifetime out of [`MIN_LEAF_TTL`]..=[`MAX_LEAF_TTL`].
    Ttl(Duration),
    /// Generating a key or a certificate failed.
    Generate(rcgen::Error),
    /// Reading or writing a file failed (files written before it stay).
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl CertsError {
    fn io(path: &Path, source: std::io::Error) -> CertsError {
        CertsError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl From<rcgen::Error> for CertsError {
    fn from(e: rcgen::Error) -> CertsError {
        CertsError::Generate(e)
    }
}

impl fmt::Display for CertsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertsError::Exists(path) => write!(
                f,
                "{} exists; certs does not overwrite a CA (use --renew to reissue the \
                 leaves from it, or choose another directory)",
                path.display()
            ),
            CertsError::NoCa(path) => write!(
                f,
                "{} is missing; --renew needs the CA that `certs --out DIR` wrote",
                path.display()
            ),
            CertsError::TrustDomainChanged { dir, asked } => write!(
                f,
                "the directory's trust domain is {dir}, not {asked}; renewing never \
                 changes identities (leave out --trust-domain, or create a new CA \
                 in another directory)"
            ),
            CertsError::CaExpiresFirst { ca_not_after } => write!(
                f,
                "the CA expires at {}, before certificates issued now would; \
                 create a new CA in another directory",
                Utc(*ca_not_after)
            ),
            CertsError::BadCa { path, why } => write!(f, "{}: {why}", path.display()),
            CertsError::TrustDomain(e) => write!(f, "trust domain: {e}"),
            CertsError::Ttl(ttl) => write!(
                f,
                "a certificate lifetime of {ttl:?} is out of range (1m to 2160h, 90 days)"
            ),
            CertsError::Generate(e) => write!(f, "generating a certificate failed: {e}"),
            CertsError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for CertsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CertsError::TrustDomain(e) => Some(e),
            CertsError::Generate(e) => Some(e),
            CertsError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
