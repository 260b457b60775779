//! TLS for `rediss://`: rustls with the ring provider. The roots are the private CA from
//! `--tls-ca-file`, else the system's; `--tls-cert-file` + `--tls-key-file` add a client
//! certificate (mutual TLS); `--tls-server-name` is the name to verify when connecting by IP.
//! Certificate problems surface as failing checks with rustls's reason, never as a fallback
//! to plain text.
//!
//! The files are read again at every handshake (every reconnection is a full handshake, and
//! SIGHUP reconnects): cert-manager and the kubelet renew them in place. A file that is
//! missing or malformed then keeps the last good set, says why once, and counts in
//! `redis_healthd_config_reload_errors_total`. When each certificate expires is a metric:
//! the client's from its file, the server's from the certificate it presented at the latest
//! handshake (seen by the verifier, not by a second connection).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use fred::types::config::{TlsConfig, TlsConnector};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tracing::{info, warn};

use crate::config::ConfigError;

/// The TLS files as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The series TLS feeds, for every target: when each certificate expires, and reloads that
/// failed. Clones share their values; the metrics registry holds one.
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    /// `notAfter` of the client certificate (from its file) and of the server's (from the
    /// latest handshake), as Unix time; absent until known.
    pub not_after: Family<CertLabels, Gauge>,
    /// Reloads that found a file missing or malformed and kept the last good set.
    pub reload_errors: Family<TargetLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub target: &'static str,
    /// `client` or `server`.
    pub cert: &'static str,
}

/// The `target` label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: &'static str,
}

impl TlsFiles {
    /// True when any TLS file was given.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The client's TLS configuration, every file read and checked now (an error names the
    /// flag), and the handle that reads them again.
    pub fn client_config(
        &self,
        metrics: TlsMetrics,
        target: &'static str,
    ) -> Result<(TlsConfig, Arc<Reloader>), ConfigError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(ConfigError("--tls-cert-file needs --tls-key-file".into())),
            (None, Some(_)) => return Err(ConfigError("--tls-key-file needs --tls-cert-file".into())),
            _ => {}
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let system_roots = match self.ca {
            Some(_) => None,
            None => Some(Arc::new(system_roots()?)),
        };
        let loaded = Loaded::build(self.read()?, self, &provider, system_roots.as_ref())?;
        let reloader = Arc::new(Reloader {
            files: self.clone(),
            provider: provider.clone(),
            system_roots,
            current: RwLock::new(Arc::new(loaded)),
            last_error: Mutex::new(None),
            metrics,
            target,
        });
        // Counted from zero, so a first failure is an increase.
        let _ = reloader
            .metrics
            .reload_errors
            .get_or_create(&TargetLabel { target });
        reloader.record_client_expiry();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier(reloader.clone())))
            .with_client_cert_resolver(Arc::new(ClientCert(reloader.clone())));
        // A resumed session skips both the verifier and the resolver: every reconnection is a
        // full handshake, so it reads the files and sees the server's certificate. Reconnections
        // are rare, and after a Redis restart no ticket would be valid anyway.
        config.resumption = rustls::client::Resumption::disabled();
        Ok((TlsConnector::from(config).into(), reloader))
    }

    /// The given files' bytes, as they are now.
    fn read(&self) -> Result<Read, ConfigError> {
        let read = |path: &Option<PathBuf>, flag| path.as_deref().map(|p| read(p, flag)).transpose();
        Ok(Read {
            ca: read(&self.ca, "--tls-ca-file")?,
            cert: read(&self.cert, "--tls-cert-file")?,
            key: read(&self.key, "--tls-key-file")?,
        })
    }
}

/// The TLS files' bytes as read at one moment.
#[derive(PartialEq, Eq)]
struct Read {
    ca: Option<Vec<u8>>,
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
}

/// One good set of TLS files, parsed.
struct Loaded {
    /// What it was built from, to tell whether the files changed since.
    read: Read,
    verifier: Arc<WebPkiServerVerifier>,
    client: Option<Arc<CertifiedKey>>,
}

impl Loaded {
    fn build(
        read: Read,
        files: &TlsFiles,
        provider: &Arc<CryptoProvider>,
        system_roots: Option<&Arc<RootCertStore>>,
    ) -> Result<Self, ConfigError> {
        let roots = match (&read.ca, system_roots) {
            (Some(pem), _) => Arc::new(roots_from(pem, path_of(&files.ca))?),
            (None, Some(roots)) => roots.clone(),
            (None, None) => return Err(ConfigError("TLS: no CA certificates".into())),
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| ConfigError(format!("--tls-ca-file: {}: {e}", path_of(&files.ca).display())))?;
        let client = match (&read.cert, &read.key) {
            (Some(cert), Some(key)) => {
                let certs = certs_from(cert, path_of(&files.cert), "--tls-cert-file")?;
                if certs.first().and_then(not_after).is_none() {
                    return Err(ConfigError(format!(
                        "--tls-cert-file: {} is not a valid X.509 certificate",
                        path_of(&files.cert).display()
                    )));
                }
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
                    ConfigError(format!(
                        "--tls-key-file: no private key in {}: {e}",
                        path_of(&files.key).display()
                    ))
                })?;
                let certified = CertifiedKey::from_der(certs, key, provider).map_err(|e| {
                    ConfigError(format!("--tls-key-file: does not match --tls-cert-file: {e}"))
                })?;
                Some(Arc::new(certified))
            }
            _ => None,
        };
        Ok(Self {
            read,
            verifier,
            client,
        })
    }
}

/// Reads the TLS files again when asked (at every handshake, and on SIGHUP) and keeps the
/// last good set.
pub struct Reloader {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    /// The system's roots, read once, when no `--tls-ca-file` was given.
    system_roots: Option<Arc<RootCertStore>>,
    current: RwLock<Arc<Loaded>>,
    /// The reason of the latest failed reload, logged once until the files change.
    last_error: Mutex<Option<String>>,
    metrics: TlsMetrics,
    /// The target whose files these are (the metrics' label).
    target: &'static str,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("target", &self.target)
            .field("files", &self.files)
            .finish()
    }
}

impl Reloader {
    /// Reads the files again; uses them if they changed and are good, else keeps the last
    /// good set (a failure is logged once per reason and counted).
    pub fn reload(&self) {
        self.refresh();
    }

    /// [`Self::reload`], returning the set in use.
    fn refresh(&self) -> Arc<Loaded> {
        let current = self.current();
        let outcome = self.files.read().and_then(|read| {
            if read == current.read {
                Ok(None)
            } else {
                Loaded::build(read, &self.files, &self.provider, self.system_roots.as_ref()).map(Some)
            }
        });
        let mut last_error = self.last_error.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(None) => {
                *last_error = None;
                current
            }
            Ok(Some(loaded)) => {
                *last_error = None;
                let loaded = Arc::new(loaded);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded.clone();
                let expires = self.record_client_expiry();
                info!(
                    client_cert_not_after = expires,
                    "TLS files changed: using them from this handshake on"
                );
                loaded
            }
            Err(e) => {
                self.metrics
                    .reload_errors
                    .get_or_create(&TargetLabel { target: self.target })
                    .inc();
                if last_error.as_deref() != Some(e.0.as_str()) {
                    warn!(target = self.target, reason = %e, "TLS files not reloaded: keeping the last good ones");
                    *last_error = Some(e.0);
                }
                current
            }
        }
    }

    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the client certificate's expiry series from the set in use; returns it.
    fn record_client_expiry(&self) -> Option<i64> {
        let current = self.current();
        let not_after = current
            .client
            .as_ref()
            .and_then(|c| c.cert.first())
            .and_then(not_after)?;
        self.metrics
            .not_after
            .get_or_create(&CertLabels {
                target: self.target,
                cert: "client",
            })
            .set(not_after);
        Some(not_after)
    }
}

/// The server certificate check: the roots of the latest good set (read again first), and
/// the presented certificate's expiry recorded whatever the outcome.
#[derive(Debug)]
struct Verifier(Arc<Reloader>);

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let loaded = self.0.refresh();
        if let Some(not_after) = not_after(end_entity) {
            self.0
                .metrics
                .not_after
                .get_or_create(&CertLabels {
                    target: self.0.target,
                    cert: "server",
                })
                .set(not_after);
        }
        loaded
            .verifier
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client certificate of the latest good set (the verifier, earlier in the same
/// handshake, has just read the files again).
#[derive(Debug)]
struct ClientCert(Arc<Reloader>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _root_hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.current().client.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.files.cert.is_some()
    }
}

/// A certificate's `notAfter` as Unix time; `None` when it does not parse.
fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError(format!("{flag}: cannot read {}: {e}", path.display())))
}

/// A given file's path for messages.
fn path_of(path: &Option<PathBuf>) -> &Path {
    path.as_deref().unwrap_or(Path::new(""))
}

fn certs_from(pem: &[u8], path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
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

fn roots_from(pem: &[u8], path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from(pem, path, "--tls-ca-file")? {
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
