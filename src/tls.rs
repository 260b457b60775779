//! TLS for `rediss://`: rustls with the ring provider. The roots are the private CA from
//! `--tls-ca-file`, else the system's; `--tls-cert-file` + `--tls-key-file` add a client
//! certificate (mutual TLS); `--tls-server-name` is the name to verify when connecting by IP.
//! Certificate problems surface as failing checks with rustls's reason, never as a fallback
//! to plain text.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fred::types::config::{TlsConfig, TlsConnector};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;

/// The TLS files as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// True when any TLS file was given.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The client's TLS configuration, every file read and checked now.
    pub fn client_config(&self) -> Result<TlsConfig, ConfigError> {
        let roots = match &self.ca {
            Some(path) => roots_from(path)?,
            None => system_roots()?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(certs_from(cert, "--tls-cert-file")?, key_from(key)?)
                .map_err(|e| ConfigError(format!("--tls-key-file: does not match --tls-cert-file: {e}")))?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(ConfigError("--tls-cert-file needs --tls-key-file".into())),
            (None, Some(_)) => return Err(ConfigError("--tls-key-file needs --tls-cert-file".into())),
        };
        Ok(TlsConnector::from(config).into())
    }
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError(format!("{flag}: cannot read {}: {e}", path.display())))
}

fn certs_from(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError(format!("{flag}: {} is not PEM certificates: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError(format!(
            "{flag}: no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn key_from(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let pem = read(path, "--tls-key-file")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        ConfigError(format!(
            "--tls-key-file: no private key in {}: {e}",
            path.display()
        ))
    })
}

fn roots_from(path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from(path, "--tls-ca-file")? {
        roots
            .add(cert)
            .map_err(|e| ConfigError(format!("--tls-ca-file: {}: {e}", path.display())))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(ConfigError(
            "TLS: no system CA certificates found; give the CA with --tls-ca-file".into(),
        ));
    }
    Ok(roots)
}
