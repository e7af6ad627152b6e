//! `demo-services certs` through its library API ([`demo_services::tls::certs`]):
//! what it writes, what each certificate says, that every leaf chains to
//! the CA as rustls will check it (webpki, on ring), and what `--renew`
//! keeps and refuses. The clock is passed in, so lifetimes are exact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use demo_services::tls::certs::{self, CertsError};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

const SERVICES: [&str; 4] = [
    "user-service",
    "order-service",
    "notification-service",
    "api-gateway",
];
const DAY: Duration = Duration::from_secs(24 * 3600);

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("demo-certs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Every file in `dir`, by name, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// The DER of the one certificate in the PEM file `path`.
fn der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    let (rest, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
    assert!(
        x509_parser::pem::parse_x509_pem(rest).is_err(),
        "{} holds one certificate",
        path.display()
    );
    assert_eq!(pem.label, "CERTIFICATE");
    pem.contents
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn serial(dir: &Path, service: &str) -> Vec<u8> {
    parse(&der(&dir.join(format!("{service}.pem"))))
        .raw_serial()
        .to_vec()
}

/// Whether webpki, as rustls runs it, accepts `leaf` as a client and as
/// a server (for `localhost`) under the CA in `ca`, at `at`.
fn chains(leaf: &Path, ca: &Path, at: OffsetDateTime) -> Result<(), webpki::Error> {
    let ca_der = CertificateDer::from(der(ca));
    let anchor = webpki::anchor_from_trusted_cert(&ca_der)?;
    let leaf_der = CertificateDer::from(der(leaf));
    let leaf = webpki::EndEntityCert::try_from(&leaf_der)?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(at.unix_timestamp() as u64));
    for usage in [
        webpki::KeyUsage::client_auth(),
        webpki::KeyUsage::server_auth(),
    ] {
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&anchor),
            &[],
            time,
            usage,
            None,
            None,
        )?;
    }
    leaf.verify_is_valid_for_subject_name(&ServerName::try_from("localhost").unwrap())?;
    leaf.verify_is_valid_for_subject_name(&ServerName::try_from("127.0.0.1").unwrap())
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn create_writes_a_ca_a_leaf_per_service_and_the_trust_domain() {
    let dir = TempDir::new("create");
    let issued = certs::create(&dir.0, "demo.local", DAY, now()).unwrap();
    let mut names: Vec<String> = vec!["ca.pem".into(), "ca.key.pem".into(), "certs.json".into()];
    for service in SERVICES {
        names.push(format!("{service}.pem"));
        names.push(format!("{service}.key.pem"));
    }
    let mut written: Vec<String> = snapshot(&dir.0).into_keys().collect();
    written.sort();
    names.sort();
    // Nothing else: no temporary file is left behind.
    assert_eq!(written, names);
    assert_eq!(issued.files.len(), names.len());
    assert_eq!(issued.trust_domain, "demo.local");

    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.0.join("certs.json")).unwrap()).unwrap();
    assert_eq!(metadata["trustDomain"], "demo.local");

    for name in names.iter().filter(|n| n.ends_with(".key.pem")) {
        let key = std::fs::read_to_string(dir.0.join(name)).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{name}");
        #[cfg(unix)]
        assert_eq!(mode(&dir.0.join(name)), 0o600, "{name} is private");
    }
}

#[test]
fn the_ca_signs_leaves_only_and_outlives_them() {
    let dir = TempDir::new("ca");
    let start = now();
    certs::create(&dir.0, "demo.local", DAY, start).unwrap();
    let ca_der = der(&dir.0.join("ca.pem"));
    let ca = parse(&ca_der);
    let constraints = ca.basic_constraints().unwrap().unwrap().value;
    assert!(constraints.ca);
    assert_eq!(constraints.path_len_constraint, Some(0));
    let usage = ca.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign());
    let lifetime = ca.validity().not_after.timestamp() - start.unix_timestamp();
    assert_eq!(lifetime, certs::CA_LIFETIME.as_secs() as i64);
}

#[test]
fn each_leaf_carries_exactly_its_spiffe_id_localhost_and_loopback() {
    let dir = TempDir::new("leaf");
    let start = now();
    let ttl = Duration::from_secs(3 * 3600);
    certs::create(&dir.0, "example.org", ttl, start).unwrap();
    for service in SERVICES {
        let leaf_der = der(&dir.0.join(format!("{service}.pem")));
        let leaf = parse(&leaf_der);
        let names = &leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        let uris: Vec<&str> = names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect();
        assert_eq!(
            uris,
            [format!("spiffe://example.org/{service}")],
            "{service}"
        );
        assert!(
            names.contains(&GeneralName::DNSName("localhost")),
            "{service}"
        );
        assert!(
            names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])),
            "{service}"
        );
        assert_eq!(names.len(), 3, "{service}: no other names");
        assert!(!leaf.is_ca(), "{service}");
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth, "{service}");
        let lifetime = leaf.validity().not_after.timestamp() - start.unix_timestamp();
        assert_eq!(lifetime, ttl.as_secs() as i64, "{service}");
        assert!(leaf.validity().not_before.timestamp() <= start.unix_timestamp());
        // The ID the server will read parses, and names the service.
        let id = tower_jwt_service_auth::mtls::SpiffeId::parse(uris[0]).unwrap();
        assert_eq!(id.service(), Some(service));
    }
}

#[test]
fn every_leaf_chains_to_its_ca_and_to_no_other() {
    let dir = TempDir::new("chain");
    let other = TempDir::new("chain-other");
    let start = now();
    certs::create(&dir.0, "demo.local", DAY, start).unwrap();
    // Another CA of the same name and trust domain.
    certs::create(&other.0, "demo.local", DAY, start).unwrap();
    let ca = dir.0.join("ca.pem");
    for service in SERVICES {
        let leaf = dir.0.join(format!("{service}.pem"));
        chains(&leaf, &ca, start).unwrap_or_else(|e| panic!("{service}: {e}"));
        assert!(
            chains(&leaf, &other.0.join("ca.pem"), start).is_err(),
            "{service}"
        );
        // Expired a second after its lifetime.
        let after = start + DAY + Duration::from_secs(1);
        assert!(chains(&leaf, &ca, after).is_err(), "{service}");
    }
}

#[test]
fn renew_keeps_the_ca_and_trust_domain_and_issues_new_leaves() {
    let dir = TempDir::new("renew");
    let start = now();
    certs::create(&dir.0, "example.org", DAY, start).unwrap();
    let before = snapshot(&dir.0);
    let serials: Vec<_> = SERVICES.iter().map(|s| serial(&dir.0, s)).collect();

    let later = start + Duration::from_secs(3600);
    let issued = certs::renew(&dir.0, None, Duration::from_secs(7200), later).unwrap();
    assert_eq!(issued.trust_domain, "example.org");
    assert_eq!(issued.files.len(), 2 * SERVICES.len(), "leaves only");
    let after = snapshot(&dir.0);
    for kept in ["ca.pem", "ca.key.pem", "certs.json"] {
        assert_eq!(after[kept], before[kept], "{kept} is kept");
    }
    for (service, old_serial) in SERVICES.iter().zip(&serials) {
        assert_ne!(&serial(&dir.0, service), old_serial, "{service}");
        let key = format!("{service}.key.pem");
        assert_ne!(after[&key], before[&key], "{service} has a new key");
        #[cfg(unix)]
        assert_eq!(mode(&dir.0.join(&key)), 0o600, "{key} is still private");
        let leaf = dir.0.join(format!("{service}.pem"));
        chains(&leaf, &dir.0.join("ca.pem"), later).unwrap();
        let cert_der = der(&leaf);
        let cert = parse(&cert_der);
        let lifetime = cert.validity().not_after.timestamp() - later.unix_timestamp();
        assert_eq!(lifetime, 7200);
        let names = &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        let uri = format!("spiffe://example.org/{service}");
        assert!(names.contains(&GeneralName::URI(&uri)), "{service}");
    }
    // Naming the directory's own trust domain is fine.
    certs::renew(&dir.0, Some("example.org"), DAY, later).unwrap();
    assert_eq!(snapshot(&dir.0).len(), before.len(), "no file left behind");
}

#[test]
fn renew_refuses_another_trust_domain_and_changes_nothing() {
    let dir = TempDir::new("renew-td");
    certs::create(&dir.0, "demo.local", DAY, now()).unwrap();
    let before = snapshot(&dir.0);
    let err = certs::renew(&dir.0, Some("other.local"), DAY, now()).unwrap_err();
    assert!(
        matches!(&err, CertsError::TrustDomainChanged { dir, asked }
            if dir == "demo.local" && asked == "other.local"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("never changes identities"),
        "{err}"
    );
    assert_eq!(snapshot(&dir.0), before);
}

#[test]
fn renew_without_a_ca_is_an_error_and_writes_nothing() {
    let dir = TempDir::new("renew-none");
    std::fs::create_dir_all(&dir.0).unwrap();
    let err = certs::renew(&dir.0, None, DAY, now()).unwrap_err();
    assert!(matches!(err, CertsError::NoCa(_)), "{err:?}");
    assert!(snapshot(&dir.0).is_empty());

    // A CA without its key is no CA either.
    certs::create(&dir.0, "demo.local", DAY, now()).unwrap();
    std::fs::remove_file(dir.0.join("ca.key.pem")).unwrap();
    let before = snapshot(&dir.0);
    let err = certs::renew(&dir.0, None, DAY, now()).unwrap_err();
    assert!(
        matches!(&err, CertsError::NoCa(p) if p.ends_with("ca.key.pem")),
        "{err:?}"
    );
    assert_eq!(snapshot(&dir.0), before);
}

#[test]
fn renew_refuses_a_ca_key_that_is_not_the_cas() {
    let dir = TempDir::new("renew-key");
    let other = TempDir::new("renew-key-other");
    certs::create(&dir.0, "demo.local", DAY, now()).unwrap();
    certs::create(&other.0, "demo.local", DAY, now()).unwrap();
    std::fs::copy(other.0.join("ca.key.pem"), dir.0.join("ca.key.pem")).unwrap();
    let before = snapshot(&dir.0);
    let err = certs::renew(&dir.0, None, DAY, now()).unwrap_err();
    assert!(
        matches!(&err, CertsError::BadCa { path, .. } if path.ends_with("ca.key.pem")),
        "{err:?}"
    );
    assert_eq!(snapshot(&dir.0), before);
}

#[test]
fn renew_refuses_leaves_that_would_outlive_the_ca() {
    let dir = TempDir::new("renew-expiry");
    let start = now();
    certs::create(&dir.0, "demo.local", DAY, start).unwrap();
    let before = snapshot(&dir.0);
    // Two days before the CA expires, a three-day leaf would outlive it.
    let late = start + certs::CA_LIFETIME - 2 * DAY;
    let err = certs::renew(&dir.0, None, 3 * DAY, late).unwrap_err();
    assert!(matches!(err, CertsError::CaExpiresFirst { .. }), "{err:?}");
    assert_eq!(snapshot(&dir.0), before);
    // A one-day leaf still fits.
    certs::renew(&dir.0, None, DAY, late).unwrap();
}

#[test]
fn create_refuses_a_directory_that_has_a_ca() {
    let dir = TempDir::new("exists");
    certs::create(&dir.0, "demo.local", DAY, now()).unwrap();
    let before = snapshot(&dir.0);
    let err = certs::create(&dir.0, "demo.local", DAY, now()).unwrap_err();
    assert!(matches!(err, CertsError::Exists(_)), "{err:?}");
    assert!(err.to_string().contains("does not overwrite"), "{err}");
    assert_eq!(snapshot(&dir.0), before);

    // The CA's certificate alone is enough to refuse.
    let dir = TempDir::new("exists-cert");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(dir.0.join("ca.pem"), "not mine").unwrap();
    let before = snapshot(&dir.0);
    let err = certs::create(&dir.0, "demo.local", DAY, now()).unwrap_err();
    assert!(matches!(err, CertsError::Exists(_)), "{err:?}");
    assert_eq!(snapshot(&dir.0), before, "not even a key written beside it");
}

#[test]
fn lifetimes_and_trust_domains_are_checked_before_anything_is_written() {
    let dir = TempDir::new("bounds");
    for ttl in [
        Duration::from_secs(59),
        certs::MAX_LEAF_TTL + Duration::from_secs(1),
    ] {
        let err = certs::create(&dir.0, "demo.local", ttl, now()).unwrap_err();
        assert!(matches!(err, CertsError::Ttl(_)), "{ttl:?}: {err:?}");
    }
    let err = certs::create(&dir.0, "Demo.Local", DAY, now()).unwrap_err();
    assert!(matches!(err, CertsError::TrustDomain(_)), "{err:?}");
    assert!(!dir.0.exists(), "nothing written");
    assert!(certs::check_ttl(certs::MIN_LEAF_TTL).is_ok());
    assert!(certs::check_ttl(certs::MAX_LEAF_TTL).is_ok());
}
