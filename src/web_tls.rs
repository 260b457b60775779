//! The HTTPS side of `--web.config.file`: rustls's server configuration for its
//! `tls_server_config` (certificate and key, versions, suites, curves) and the client
//! certificate policies of `client_auth_type`, with `client_allowed_sans` on top, as Go's
//! `crypto/tls` (which exporter-toolkit uses) applies them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use serde::Deserialize;

/// `tls_server_config` of the web configuration file, as exporter-toolkit defines it.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsServer {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub curve_preferences: Option<Vec<String>>,
}

/// A file as read: its full path and its bytes.
type Read = (PathBuf, Vec<u8>);

/// The files `tls_server_config` names, as read.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: Option<Read>,
    pub key: Option<Read>,
    pub client_ca: Option<Read>,
}

impl ServerFiles {
    /// Reads the files `tls` names, relative to `dir` (blocking); the key at fault on error.
    pub fn read(tls: &TlsServer, dir: &Path) -> Result<Self, (&'static str, String)> {
        let read =
            |key: &'static str, name: &Option<PathBuf>| -> Result<Option<Read>, (&'static str, String)> {
                let Some(name) = name else { return Ok(None) };
                let full = dir.join(name);
                match std::fs::read(&full) {
                    Ok(bytes) => Ok(Some((full, bytes))),
                    Err(e) => Err((key, format!("cannot read {}: {e}", full.display()))),
                }
            };
        Ok(Self {
            cert: read("tls_server_config.cert_file", &tls.cert_file)?,
            key: read("tls_server_config.key_file", &tls.key_file)?,
            client_ca: read("tls_server_config.client_ca_file", &tls.client_ca_file)?,
        })
    }

    /// The paths read, for `Debug` (never the contents: the key is a secret).
    pub fn paths(&self) -> Vec<&Path> {
        [&self.cert, &self.key, &self.client_ca]
            .into_iter()
            .flatten()
            .map(|(path, _)| path.as_path())
            .collect()
    }
}

/// rustls's server side for `tls_server_config`, its files as `files` holds them.
pub fn server_config<'a, E>(
    tls: &'a TlsServer,
    files: &'a ServerFiles,
    fail: &impl Fn(&str, String) -> E,
) -> Result<ServerConfig, E> {
    let pem = |inline: &'a Option<String>,
               file: &'a Option<Read>,
               key: &str,
               file_key: &str|
     -> Result<Option<&'a [u8]>, E> {
        match (inline, file.as_ref().map(|(_, bytes)| bytes.as_slice())) {
            (Some(_), Some(_)) => Err(fail(key, format!("give {key} or {file_key}, not both"))),
            (Some(text), None) => Ok(Some(text.as_bytes())),
            (None, bytes) => Ok(bytes),
        }
    };
    let cert_pem = pem(&tls.cert, &files.cert, "tls_server_config.cert", "cert_file")?
        .ok_or_else(|| fail("tls_server_config.cert_file", "is required".into()))?;
    let key_pem = pem(&tls.key, &files.key, "tls_server_config.key", "key_file")?
        .ok_or_else(|| fail("tls_server_config.key_file", "is required".into()))?;
    let ca_pem = pem(
        &tls.client_ca,
        &files.client_ca,
        "tls_server_config.client_ca",
        "client_ca_file",
    )?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            fail(
                "tls_server_config.cert_file",
                format!("not PEM certificates: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(fail("tls_server_config.cert_file", "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| fail("tls_server_config.key_file", format!("holds no private key: {e}")))?;

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &tls.cipher_suites {
        let mut suites = Vec::new();
        for name in names {
            let suite = provider
                .cipher_suites
                .iter()
                .find(|s| go_cipher_name(s.suite()) == Some(name.as_str()))
                .ok_or_else(|| {
                    fail(
                        "tls_server_config.cipher_suites",
                        format!("{name:?} is not a cipher suite this server has"),
                    )
                })?;
            suites.push(*suite);
        }
        // TLS 1.3's suites are not configurable in Go either: keep them.
        suites.extend(
            provider
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS13),
        );
        provider.cipher_suites = suites;
    }
    if let Some(curves) = &tls.curve_preferences {
        let mut groups = Vec::new();
        for curve in curves {
            let wanted = match curve.as_str() {
                "CurveP256" => rustls::NamedGroup::secp256r1,
                "CurveP384" => rustls::NamedGroup::secp384r1,
                "X25519" => rustls::NamedGroup::X25519,
                other => {
                    return Err(fail(
                        "tls_server_config.curve_preferences",
                        format!("{other:?} is not a curve this server has (CurveP256, CurveP384, X25519)"),
                    ))
                }
            };
            if let Some(group) = provider.kx_groups.iter().find(|g| g.name() == wanted) {
                groups.push(*group);
            }
        }
        provider.kx_groups = groups;
    }
    let version = |text: &Option<String>, key: &str, default: u8| -> Result<u8, E> {
        match text.as_deref() {
            None => Ok(default),
            // rustls has no TLS 1.0 or 1.1: a minimum of either is TLS 1.2.
            Some("TLS10" | "TLS11") if key.ends_with("min_version") => Ok(12),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(other) => Err(fail(
                key,
                format!("{other:?} is not one of TLS12, TLS13 (this server has no TLS 1.0 or 1.1)"),
            )),
        }
    };
    let min = version(&tls.min_version, "tls_server_config.min_version", 12)?;
    let max = version(&tls.max_version, "tls_server_config.max_version", 13)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    if versions.is_empty() {
        return Err(fail(
            "tls_server_config.max_version",
            "is below min_version".into(),
        ));
    }
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| fail("tls_server_config", e.to_string()))?;
    let verifier = client_verifier(tls, ca_pem, provider, fail)?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        fail(
            "tls_server_config.key_file",
            format!("does not go with cert_file: {e}"),
        )
    })?;
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The client-certificate policy of `client_auth_type`, with `client_allowed_sans` on top.
fn client_verifier<E>(
    tls: &TlsServer,
    ca_pem: Option<&[u8]>,
    provider: Arc<CryptoProvider>,
    fail: &impl Fn(&str, String) -> E,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, E> {
    let kind = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let roots = || -> Result<Arc<RootCertStore>, E> {
        let pem = ca_pem.ok_or_else(|| {
            fail(
                "tls_server_config.client_ca_file",
                format!("is required with client_auth_type {kind}"),
            )
        })?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| {
                fail(
                    "tls_server_config.client_ca_file",
                    format!("not PEM certificates: {e}"),
                )
            })?;
            roots.add(cert).map_err(|e| {
                fail(
                    "tls_server_config.client_ca_file",
                    format!("not a usable CA certificate: {e}"),
                )
            })?;
        }
        Ok(Arc::new(roots))
    };
    let webpki = |optional: bool| -> Result<Arc<dyn ClientCertVerifier>, E> {
        let builder = WebPkiClientVerifier::builder_with_provider(roots()?, provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        let verifier = builder
            .build()
            .map_err(|e| fail("tls_server_config.client_ca_file", e.to_string()))?;
        Ok(verifier)
    };
    let inner: Arc<dyn ClientCertVerifier> = match kind {
        "NoClientCert" => {
            if tls.client_allowed_sans.is_some() {
                return Err(fail("tls_server_config.client_allowed_sans", "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert".into()));
            }
            return Ok(None);
        }
        "RequestClientCert" => Arc::new(AnyClientCert { provider, mandatory: false }),
        "RequireAnyClientCert" => Arc::new(AnyClientCert { provider, mandatory: true }),
        "VerifyClientCertIfGiven" => webpki(true)?,
        "RequireAndVerifyClientCert" => webpki(false)?,
        other => {
            return Err(fail(
                "tls_server_config.client_auth_type",
                format!("{other:?} is not one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
            ))
        }
    };
    match &tls.client_allowed_sans {
        None => Ok(Some(inner)),
        Some(_) if !matches!(kind, "RequireAnyClientCert" | "RequireAndVerifyClientCert") => Err(fail(
            "tls_server_config.client_allowed_sans",
            "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert".into(),
        )),
        Some(sans) => Ok(Some(Arc::new(AllowedSans {
            inner,
            sans: sans.clone(),
        }))),
    }
}

/// Go's name of a TLS 1.2 suite (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`), for the ones rustls has.
fn go_cipher_name(suite: rustls::CipherSuite) -> Option<&'static str> {
    use rustls::CipherSuite as S;
    Some(match suite {
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        _ => return None,
    })
}

/// `RequestClientCert` / `RequireAnyClientCert`: a certificate is asked for (or required)
/// and its signature checked, but not its issuer, as Go's `tls` does.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
    mandatory: bool,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `client_allowed_sans`: the client certificate must also name one of these (DNS, IP,
/// e-mail or URI), exactly.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    sans: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity);
        if names.iter().any(|name| self.sans.contains(name)) {
            Ok(verified)
        } else {
            Err(rustls::Error::General(
                "the client certificate has none of client_allowed_sans".into(),
            ))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The DNS names, IP addresses, e-mail addresses and URIs a certificate names.
fn subject_alt_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(sans)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    sans.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(n) | GeneralName::RFC822Name(n) | GeneralName::URI(n) => {
                Some((*n).to_owned())
            }
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
