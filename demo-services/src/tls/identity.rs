//! A service's own side of mutual TLS: the directory's CA, which every
//! peer must chain to ([`TlsDir`]), and the service's leaf certificate and
//! key ([`Identity`]), which it presents both when it serves and when it
//! calls.
//!
//! rustls asks [`Identity`] for the certificate on every handshake instead
//! of holding a copy in each configuration. Swapping what it holds
//! ([`Identity::reload`]) therefore changes what every new connection
//! presents, server and client side alike, while established connections
//! keep the keys they were made with.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SignatureScheme};
use tower_jwt_service_auth::mtls::SpiffeId;

use super::certs::{CA_CERT, cert_file, key_file};
use super::files::{TlsSetupError, read_certs, read_pem};

/// A TLS directory (as `certs` writes it) opened for one service: the CA
/// its peers must chain to, and the service's own [`Identity`].
///
/// The CA is read once, at start; the leaves rotate under it (`certs
/// --renew` keeps the CA), so only the [`Identity`] is ever reloaded.
#[derive(Clone)]
pub struct TlsDir {
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    identity: Arc<Identity>,
}

impl fmt::Debug for TlsDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsDir")
            .field("dir", &self.dir)
            .field("roots", &self.roots.len())
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl TlsDir {
    /// Reads `dir`'s `ca.pem` and `service`'s certificate and key, all on
    /// ring.
    pub fn open(dir: &Path, service: &str) -> Result<TlsDir, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_path = dir.join(CA_CERT);
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&ca_path)? {
            roots.add(ca).map_err(|source| TlsSetupError::BadCa {
                path: ca_path.clone(),
                source,
            })?;
        }
        let identity = Identity::load(dir, service, provider.clone())?;
        Ok(TlsDir {
            dir: dir.to_owned(),
            provider,
            roots: Arc::new(roots),
            identity: Arc::new(identity),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The crypto provider every configuration built from it uses.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// The trust anchors: the directory's CA.
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// The service's own certificate and key.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }
}

/// A service's own leaf certificate and key as last read from disk; what
/// it presents as a server and as a client.
pub struct Identity {
    service: String,
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
}

/// One certificate as loaded: what rustls presents, and what the service
/// reports about it.
#[derive(Debug)]
pub struct Loaded {
    /// The chain and signing key handed to rustls.
    pub key: Arc<CertifiedKey>,
    /// The identity the certificate proves.
    pub spiffe_id: SpiffeId,
    /// The start of its validity.
    pub not_before: SystemTime,
    /// The end of its validity.
    pub not_after: SystemTime,
    /// Its serial number, in hex.
    pub serial: String,
}

impl Loaded {
    /// The point at which the certificate should have been replaced: 70 %
    /// of the way through its validity, as short-lived certificates are
    /// usually renewed (the remaining 30 % leaves room for a failed
    /// renewal to be noticed and retried).
    pub fn refresh_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO);
        self.not_before + lifetime.mul_f64(0.7)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current();
        f.debug_struct("Identity")
            .field("spiffe_id", &current.spiffe_id.as_str())
            .field("serial", &current.serial)
            .field("cert", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads `service`'s certificate and key from `dir`.
    pub fn load(
        dir: &Path,
        service: &str,
        provider: Arc<CryptoProvider>,
    ) -> Result<Identity, TlsSetupError> {
        let cert_path = dir.join(cert_file(service));
        let key_path = dir.join(key_file(service));
        let loaded = read(service, &cert_path, &key_path, &provider)?;
        Ok(Identity {
            service: service.to_owned(),
            cert_path,
            key_path,
            provider,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// The certificate new handshakes present.
    pub fn current(&self) -> Arc<Loaded> {
        // A poisoned lock still holds a whole `Arc`: writers only swap it.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again. On success new handshakes present the new
    /// certificate; on failure nothing changes and the error says why.
    pub fn reload(&self) -> Result<Arc<Loaded>, TlsSetupError> {
        let loaded = Arc::new(read(
            &self.service,
            &self.cert_path,
            &self.key_path,
            &self.provider,
        )?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded.clone();
        Ok(loaded)
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The private key file.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Reads and checks a leaf: its key matches, it carries the SPIFFE ID of
/// `service`, and its validity is readable.
fn read(
    service: &str,
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsSetupError> {
    let chain = read_certs(cert_path)?;
    let key =
        PrivateKeyDer::from_pem_slice(&read_pem(key_path)?).map_err(|e| TlsSetupError::Pem {
            path: key_path.to_owned(),
            reason: e.to_string(),
        })?;
    let bad = |reason: String| TlsSetupError::Identity {
        path: cert_path.to_owned(),
        reason,
    };
    let spiffe_id = super::server::peer_identity(chain.first())
        .map_err(|e| bad(e.to_string()))?
        .spiffe_id()
        .clone();
    if spiffe_id.service() != Some(service) {
        return Err(bad(format!(
            "it is {spiffe_id}, not a certificate of {service}"
        )));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| bad(format!("cannot be parsed: {e}")))?;
    let time = |t: x509_parser::time::ASN1Time| {
        u64::try_from(t.timestamp())
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .map_err(|_| bad("its validity starts before 1970".to_owned()))
    };
    let not_before = time(cert.validity().not_before)?;
    let not_after = time(cert.validity().not_after)?;
    let serial = cert.tbs_certificate.raw_serial_as_string();
    let key = CertifiedKey::from_der(chain, key, provider).map_err(TlsSetupError::Config)?;
    Ok(Loaded {
        key: Arc::new(key),
        spiffe_id,
        not_before,
        not_after,
        serial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tls-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        super::super::certs::create(
            &dir,
            "demo.local",
            Duration::from_secs(3600),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_service_is_its_own_certificate_and_nobody_else_s() {
        let dir = dir("own");
        let tls = TlsDir::open(&dir, "order-service").unwrap();
        let current = tls.identity().current();
        assert_eq!(
            current.spiffe_id.as_str(),
            "spiffe://demo.local/order-service"
        );
        let lifetime = current
            .not_after
            .duration_since(current.not_before)
            .unwrap();
        assert_eq!(
            current
                .refresh_at()
                .duration_since(current.not_before)
                .unwrap(),
            lifetime.mul_f64(0.7)
        );

        // The user service's files under the order service's name.
        std::fs::copy(dir.join("user-service.pem"), dir.join("order-service.pem")).unwrap();
        std::fs::copy(
            dir.join("user-service.key.pem"),
            dir.join("order-service.key.pem"),
        )
        .unwrap();
        let err = TlsDir::open(&dir, "order-service").unwrap_err();
        assert!(
            err.to_string()
                .contains("spiffe://demo.local/user-service, not a certificate of order-service"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_reload_keeps_the_certificate_and_a_good_one_replaces_it() {
        let dir = dir("reload");
        let tls = TlsDir::open(&dir, "user-service").unwrap();
        let first = tls.identity().current();

        // Half a renewal: a new certificate beside a key that is not one.
        super::super::certs::renew(
            &dir,
            None,
            Duration::from_secs(3600),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let renewed_key = std::fs::read(dir.join("user-service.key.pem")).unwrap();
        std::fs::write(dir.join("user-service.key.pem"), b"garbage").unwrap();
        assert!(tls.identity().reload().is_err());
        assert_eq!(tls.identity().current().serial, first.serial);

        std::fs::write(dir.join("user-service.key.pem"), &renewed_key).unwrap();
        let second = tls.identity().reload().unwrap();
        assert_ne!(second.serial, first.serial);
        assert_eq!(tls.identity().current().serial, second.serial);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
