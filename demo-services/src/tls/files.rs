//! Reading a TLS directory's PEM files, bounded in size, and the error
//! every TLS set-up step reports.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The largest PEM file read from a TLS directory: a chain of a few
/// certificates is a few KiB, so anything near this is not one.
const MAX_PEM_SIZE: u64 = 64 * 1024;

/// Reads a PEM file of at most [`MAX_PEM_SIZE`] bytes.
pub(crate) fn read_pem(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    use std::io::Read;

    let read = |path: &Path| -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_PEM_SIZE + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_PEM_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {MAX_PEM_SIZE} bytes"),
            ));
        }
        Ok(bytes)
    };
    read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads the certificates of a PEM file; fails if it holds none.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// Why a TLS configuration (a server's or a client's) could not be built,
/// or a certificate not (re)loaded. The variants about a file name it.
#[derive(Debug)]
pub enum TlsSetupError {
    /// A file is missing, unreadable or too large.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not the PEM it should be.
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate file holds no certificate.
    NoCertificate(PathBuf),
    /// `ca.pem` holds a certificate that cannot be a trust anchor.
    BadCa {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built.
    Verifier(String),
    /// rustls refused the configuration (the key does not match the
    /// certificate, say).
    Config(rustls::Error),
    /// A service's own certificate does not carry exactly one SPIFFE ID
    /// or a readable validity.
    Identity {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSetupError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            TlsSetupError::Pem { path, reason } => {
                write!(f, "{} is not valid PEM: {reason}", path.display())
            }
            TlsSetupError::NoCertificate(path) => {
                write!(f, "{} holds no certificate", path.display())
            }
            TlsSetupError::BadCa { path, source } => {
                write!(
                    f,
                    "{} is not a usable CA certificate: {source}",
                    path.display()
                )
            }
            TlsSetupError::Verifier(reason) => {
                write!(f, "cannot verify client certificates: {reason}")
            }
            TlsSetupError::Config(e) => write!(f, "invalid TLS configuration: {e}"),
            TlsSetupError::Identity { path, reason } => {
                write!(f, "{}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for TlsSetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsSetupError::Read { source, .. } => Some(source),
            TlsSetupError::BadCa { source, .. } | TlsSetupError::Config(source) => Some(source),
            _ => None,
        }
    }
}
