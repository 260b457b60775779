//! TLS for `rediss://`: rustls with the ring provider. The roots are the private CA from
//! `--tls-ca-file`, else the system's; `--tls-cert-file` + `--tls-key-file` add a client
//! certificate (mutual TLS); `--tls-server-name` is the name to verify when connecting by IP.
//! Certificate problems surface as failing checks with rustls's reason, never as a fallback
//! to plain text.
//!
//! The files are read again, off the runtime thread, once per check interval, when a
//! connection drops and on SIGHUP; every reconnection is a full handshake with the latest
//! good set: cert-manager and the kubelet renew the files in place. A file that is
//! missing or malformed then keeps the last good set, says why once, and counts in
//! `redis_healthd_config_reload_errors_total`. When each certificate expires is a metric:
//! the client's from its file, the server's from the certificate it presented at the latest
//! handshake (seen by the verifier, not by a second connection).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

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

/// One of the TLS files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    Ca,
    Cert,
    Key,
}

impl TlsFile {
    /// The file in log fields: `ca`, `cert`, `key`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFile::Ca => "ca",
            TlsFile::Cert => "cert",
            TlsFile::Key => "key",
        }
    }
}

/// Why a set of TLS files cannot be used. A configuration error at start (naming the flag or
/// key of [`TlsError::file`]); at a reload, a reason to keep the last good set.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        file: TlsFile,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not PEM certificates: {reason}", path.display())]
    NotPem {
        file: TlsFile,
        path: PathBuf,
        reason: String,
    },
    #[error("no certificate in {}", path.display())]
    NoCertificate { file: TlsFile, path: PathBuf },
    #[error("{} is not a valid X.509 certificate", path.display())]
    NotX509 { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    #[error("no private key in {}: {reason}", path.display())]
    NoKey { path: PathBuf, reason: String },
    #[error("does not match the client certificate: {reason}")]
    KeyMismatch { reason: String },
    #[error("needs a private key file as well")]
    CertWithoutKey,
    #[error("needs a client certificate file as well")]
    KeyWithoutCert,
    #[error(
        "no system CA certificates found: give the CA file (--tls-ca-file, or tls_ca_file in a config file)"
    )]
    NoSystemRoots,
    #[error("TLS: {0}")]
    Protocol(String),
}

impl TlsError {
    /// The file the error is about, if one.
    pub fn file(&self) -> Option<TlsFile> {
        match self {
            TlsError::Unreadable { file, .. }
            | TlsError::NotPem { file, .. }
            | TlsError::NoCertificate { file, .. } => Some(*file),
            TlsError::NotX509 { .. } | TlsError::CertWithoutKey => Some(TlsFile::Cert),
            TlsError::BadCa { .. } | TlsError::NoSystemRoots => Some(TlsFile::Ca),
            TlsError::NoKey { .. } | TlsError::KeyMismatch { .. } | TlsError::KeyWithoutCert => {
                Some(TlsFile::Key)
            }
            TlsError::Protocol(_) => None,
        }
    }
}

/// The TLS files of one target.
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
    /// flag), and the handle that reads them again. With `verify_as`, every server's
    /// certificate is verified for that name, whatever address it was reached by: behind
    /// Sentinel the master's address comes from Sentinel, and fred gives it no server name.
    pub fn client_config(
        &self,
        metrics: TlsMetrics,
        target: &'static str,
        verify_as: Option<&str>,
    ) -> Result<(TlsConfig, Arc<Reloader>), TlsError> {
        let verify_as = verify_as
            .map(|name| {
                ServerName::try_from(name.to_owned())
                    .map_err(|e| TlsError::Protocol(format!("{name:?} is not a valid server name: {e}")))
            })
            .transpose()?;
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(TlsError::CertWithoutKey),
            (None, Some(_)) => return Err(TlsError::KeyWithoutCert),
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
            reading: AtomicBool::new(false),
        });
        // Counted from zero, so a first failure is an increase.
        let _ = reloader
            .metrics
            .reload_errors
            .get_or_create(&TargetLabel { target });
        reloader.record_client_expiry();
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Protocol(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier(reloader.clone(), verify_as)))
            .with_client_cert_resolver(Arc::new(ClientCert(reloader.clone())));
        // A resumed session skips both the verifier and the resolver: every reconnection is a
        // full handshake, so it reads the files and sees the server's certificate. Reconnections
        // are rare, and after a Redis restart no ticket would be valid anyway.
        config.resumption = rustls::client::Resumption::disabled();
        Ok((TlsConnector::from(config).into(), reloader))
    }

    /// The given files' bytes, as they are now.
    fn read(&self) -> Result<Read, TlsError> {
        let read = |path: &Option<PathBuf>, file| path.as_deref().map(|p| read(p, file)).transpose();
        Ok(Read {
            ca: read(&self.ca, TlsFile::Ca)?,
            cert: read(&self.cert, TlsFile::Cert)?,
            key: read(&self.key, TlsFile::Key)?,
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
    ) -> Result<Self, TlsError> {
        let roots = match (&read.ca, system_roots) {
            (Some(pem), _) => Arc::new(roots_from(pem, path_of(&files.ca))?),
            (None, Some(roots)) => roots.clone(),
            (None, None) => return Err(TlsError::NoSystemRoots),
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::BadCa {
                path: path_of(&files.ca).to_owned(),
                reason: e.to_string(),
            })?;
        let client = match (&read.cert, &read.key) {
            (Some(cert), Some(key)) => {
                let certs = certs_from(cert, path_of(&files.cert), TlsFile::Cert)?;
                if certs.first().and_then(not_after).is_none() {
                    return Err(TlsError::NotX509 {
                        path: path_of(&files.cert).to_owned(),
                    });
                }
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::NoKey {
                    path: path_of(&files.key).to_owned(),
                    reason: e.to_string(),
                })?;
                let certified =
                    CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError::KeyMismatch {
                        reason: e.to_string(),
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
    /// A read is under way on a blocking thread.
    reading: AtomicBool,
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
    /// Reads the files again on a blocking thread, waiting at most `budget` for it: uses them
    /// if they changed and are good, else keeps the last good set (a failure is logged once
    /// per reason and counted). While a read is still under way (a stuck mount) no other is
    /// started, and the last good set stays in use.
    pub async fn reload_off_thread(self: &Arc<Self>, budget: Duration) {
        let Some(read) = self.start_reading() else {
            warn!(
                redis_target = self.target,
                "TLS files still being read (an earlier read has not returned): keeping the last good ones"
            );
            return;
        };
        if tokio::time::timeout(budget, read).await.is_err() {
            warn!(
                redis_target = self.target,
                "TLS files not read within {}: keeping the last good ones",
                humantime::format_duration(budget)
            );
        }
    }

    /// [`Self::reload_off_thread`] without waiting for it.
    pub fn reload_in_background(self: &Arc<Self>) {
        drop(self.start_reading());
    }

    /// Starts a read on a blocking thread, unless one is under way.
    fn start_reading(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.reading.swap(true, Ordering::AcqRel) {
            return None;
        }
        let reloader = self.clone();
        Some(tokio::task::spawn_blocking(move || {
            reloader.reload();
            reloader.reading.store(false, Ordering::Release);
        }))
    }

    /// Reads the files again (blocking); uses them if they changed and are good, else keeps
    /// the last good set.
    fn reload(&self) -> Arc<Loaded> {
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
                let reason = e.to_string();
                if last_error.as_deref() != Some(reason.as_str()) {
                    let file = e.file().map_or("", TlsFile::as_str);
                    warn!(redis_target = self.target, file, reason = %reason, "TLS files not reloaded: keeping the last good ones");
                    *last_error = Some(reason);
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
struct Verifier(Arc<Reloader>, Option<ServerName<'static>>);

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // No file is read here, on the runtime thread: the set in use is the latest good one
        // that `Reloader::reload_off_thread` read.
        let loaded = self.0.current();
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
        let server_name = self.1.as_ref().unwrap_or(server_name);
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

fn read(path: &Path, file: TlsFile) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Unreadable {
        file,
        path: path.to_owned(),
        source,
    })
}

/// A given file's path for messages.
fn path_of(path: &Option<PathBuf>) -> &Path {
    path.as_deref().unwrap_or(Path::new(""))
}

fn certs_from(pem: &[u8], path: &Path, file: TlsFile) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NotPem {
            file,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            file,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn roots_from(pem: &[u8], path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from(pem, path, TlsFile::Ca)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}
