//! `--web.config.file`: who may reach the HTTP side, in the Prometheus exporters' own format
//! (exporter-toolkit's web configuration, as node_exporter and blackbox_exporter read it):
//! `tls_server_config` (HTTPS, optional client certificates), `http_server_config.headers`,
//! `basic_auth_users` (bcrypt hashes) and `rate_limit`. Unknown keys are refused, naming the
//! key. [`Sources::read`] reads the file and every file it names; [`Sources::build`] turns them
//! into [`WebSettings`], so that a reload can tell a change from the bytes alone. Relative paths
//! are read from the file's directory, as exporter-toolkit does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use serde::Deserialize;

/// Why a web configuration cannot be used: the file, the key, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {key}{}{problem}", path.display(), if key.is_empty() { "" } else { ": " })]
pub struct WebConfigError {
    pub path: PathBuf,
    /// The key at fault (`tls_server_config.cert_file`), empty for the file as a whole.
    pub key: String,
    pub problem: String,
}

/// What the web configuration asks for, ready to serve with. No `Debug` of the hashes.
#[derive(Clone)]
pub struct WebSettings {
    /// HTTPS, when `tls_server_config` is given.
    pub tls: Option<Arc<ServerConfig>>,
    /// User → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// `http_server_config.headers`, added to every answer.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `rate_limit`: one request per `interval`, bursts of `burst`; `None`: no limit.
    pub rate_limit: Option<(Duration, u32)>,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl WebSettings {
    /// One line for `--check-config` and the start-up log.
    pub fn summary(&self) -> String {
        let tls = match &self.tls {
            Some(_) => "HTTPS",
            None => "plain HTTP",
        };
        let users = match self.users.len() {
            0 => "no basic auth".to_owned(),
            n => format!("basic auth for {n} user(s)"),
        };
        format!("{tls}, {users}, {} extra header(s)", self.headers.len())
    }
}

/// The file's own keys, as exporter-toolkit defines them.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WebFile {
    tls_server_config: Option<TlsServer>,
    http_server_config: Option<HttpServer>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RateLimit>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsServer {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpServer {
    /// Accepted for compatibility; this server speaks HTTP/1.1 only.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RateLimit {
    interval: Option<String>,
    burst: Option<u32>,
}

/// The headers exporter-toolkit lets a web configuration set.
const HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

/// The web configuration file and every file it names, as bytes: what a reload compares.
/// `Debug` names the files only: the key file is a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Sources {
    path: PathBuf,
    yaml: Vec<u8>,
    /// The files `tls_server_config` names, in a fixed order: cert, key, client CA.
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<_> = self.files.iter().map(|(path, _)| path).collect();
        f.debug_struct("Sources")
            .field("path", &self.path)
            .field("files", &files)
            .finish()
    }
}

impl Sources {
    /// Reads the file and the files it names (blocking: call off the runtime thread).
    pub fn read(path: &Path) -> Result<Self, WebConfigError> {
        let fail = |key: &str, problem: String| WebConfigError {
            path: path.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let yaml = std::fs::read(path).map_err(|e| fail("", format!("cannot read it: {e}")))?;
        let file = parse(path, &yaml)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut files = Vec::new();
        if let Some(tls) = &file.tls_server_config {
            for (key, name) in [
                ("tls_server_config.cert_file", &tls.cert_file),
                ("tls_server_config.key_file", &tls.key_file),
                ("tls_server_config.client_ca_file", &tls.client_ca_file),
            ] {
                if let Some(name) = name {
                    let full = dir.join(name);
                    let bytes = std::fs::read(&full)
                        .map_err(|e| fail(key, format!("cannot read {}: {e}", full.display())))?;
                    files.push((full, bytes));
                }
            }
        }
        Ok(Self {
            path: path.to_owned(),
            yaml,
            files,
        })
    }

    /// The settings these bytes describe.
    pub fn build(&self) -> Result<WebSettings, WebConfigError> {
        let fail = |key: &str, problem: String| WebConfigError {
            path: self.path.clone(),
            key: key.to_owned(),
            problem,
        };
        let file = parse(&self.path, &self.yaml)?;
        let bytes_of = |name: &Option<PathBuf>| -> Option<&[u8]> {
            let name = name.as_ref()?;
            let dir = self.path.parent().unwrap_or(Path::new("."));
            let full = dir.join(name);
            self.files
                .iter()
                .find(|(p, _)| *p == full)
                .map(|(_, b)| b.as_slice())
        };
        let tls = match &file.tls_server_config {
            None => None,
            Some(tls) => Some(Arc::new(server_config(tls, &bytes_of, &fail)?)),
        };
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            // The cost field of `$2y$10$...`: an unparsable hash would fail every login.
            if bcrypt_cost(hash).is_none() {
                return Err(fail(
                    &format!("basic_auth_users.{user}"),
                    "is not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')".into(),
                ));
            }
        }
        let mut headers = Vec::new();
        for (name, value) in file
            .http_server_config
            .and_then(|h| h.headers)
            .unwrap_or_default()
        {
            let key = format!("http_server_config.headers.{name}");
            let Some(known) = HEADERS.iter().find(|h| h.eq_ignore_ascii_case(&name)) else {
                return Err(fail(
                    &key,
                    format!("not a header that can be set; these can: {}", HEADERS.join(", ")),
                ));
            };
            if value.is_empty() {
                continue;
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| fail(&key, "is not a valid header value".into()))?;
            headers.push((HeaderName::from_static(lowercase(known)), value));
        }
        let rate_limit = match file.rate_limit {
            None => None,
            Some(limit) => {
                let interval = match limit.interval.as_deref().map(str::trim) {
                    None | Some("0") | Some("") => Duration::ZERO,
                    Some(text) => humantime::parse_duration(text)
                        .map_err(|e| fail("rate_limit.interval", format!("{e} (expected e.g. 1s, 100ms)")))?,
                };
                (!interval.is_zero()).then_some((interval, limit.burst.unwrap_or(1).max(1)))
            }
        };
        Ok(WebSettings {
            tls,
            users,
            headers,
            rate_limit,
        })
    }
}

/// The YAML, with the key of the first problem; an empty file is an empty configuration.
fn parse(path: &Path, yaml: &[u8]) -> Result<WebFile, WebConfigError> {
    if yaml.iter().all(u8::is_ascii_whitespace) {
        return Ok(WebFile::default());
    }
    let deserializer = yaml_serde::Deserializer::from_slice(yaml);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let problem = e.into_inner().to_string();
        // The YAML error names the enclosing key itself (`tls_server_config: unknown field`).
        let problem = match key.rsplit_once('.') {
            Some((parent, _)) => problem
                .strip_prefix(&format!("{parent}: "))
                .map(str::to_owned)
                .unwrap_or(problem),
            None => problem,
        };
        WebConfigError {
            path: path.to_owned(),
            key,
            problem,
        }
    })
}

fn lowercase(header: &'static str) -> &'static str {
    match header {
        "Content-Security-Policy" => "content-security-policy",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "strict-transport-security",
    }
}

/// The cost of a bcrypt hash (`$2y$10$...` → 10), if it is one.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let mut parts = hash.split('$');
    let (empty, version, cost, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let known = matches!(version, "2a" | "2b" | "2x" | "2y");
    (empty.is_empty() && known && rest.len() == 53)
        .then(|| cost.parse().ok())
        .flatten()
}

/// rustls's server side for `tls_server_config`.
fn server_config<'a>(
    tls: &'a TlsServer,
    bytes_of: &impl Fn(&Option<PathBuf>) -> Option<&'a [u8]>,
    fail: &impl Fn(&str, String) -> WebConfigError,
) -> Result<ServerConfig, WebConfigError> {
    let pem = |inline: &'a Option<String>,
               file: &Option<PathBuf>,
               key: &str,
               file_key: &str|
     -> Result<Option<&'a [u8]>, WebConfigError> {
        match (inline, bytes_of(file)) {
            (Some(_), Some(_)) => Err(fail(key, format!("give {key} or {file_key}, not both"))),
            (Some(text), None) => Ok(Some(text.as_bytes())),
            (None, bytes) => Ok(bytes),
        }
    };
    let cert_pem = pem(&tls.cert, &tls.cert_file, "tls_server_config.cert", "cert_file")?
        .ok_or_else(|| fail("tls_server_config.cert_file", "is required".into()))?;
    let key_pem = pem(&tls.key, &tls.key_file, "tls_server_config.key", "key_file")?
        .ok_or_else(|| fail("tls_server_config.key_file", "is required".into()))?;
    let ca_pem = pem(
        &tls.client_ca,
        &tls.client_ca_file,
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
    let version = |text: &Option<String>, key: &str, default: u8| -> Result<u8, WebConfigError> {
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
fn client_verifier(
    tls: &TlsServer,
    ca_pem: Option<&[u8]>,
    provider: Arc<CryptoProvider>,
    fail: &impl Fn(&str, String) -> WebConfigError,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, WebConfigError> {
    let kind = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let roots = || -> Result<Arc<RootCertStore>, WebConfigError> {
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
    let webpki = |optional: bool| -> Result<Arc<dyn ClientCertVerifier>, WebConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<WebSettings, WebConfigError> {
        Sources {
            path: PathBuf::from("/etc/web.yml"),
            yaml: yaml.as_bytes().to_vec(),
            files: Vec::new(),
        }
        .build()
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_key() {
        let e = build("tls_server_config:\n  cert_fil: a.pem\n").unwrap_err();
        assert_eq!(e.key, "tls_server_config.cert_fil");
        assert!(
            e.to_string()
                .starts_with("/etc/web.yml: tls_server_config.cert_fil: unknown field `cert_fil`"),
            "{e}"
        );
        let e = build("basic_auth_user:\n  a: b\n").unwrap_err();
        assert_eq!(e.key, "basic_auth_user");
        let e = build("http_server_config:\n  headers:\n    X-Powered-By: me\n").unwrap_err();
        assert_eq!(e.key, "http_server_config.headers.X-Powered-By");
    }

    #[test]
    fn users_headers_and_rate_limit_are_read() {
        let hash = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";
        let settings = build(&format!(
            "basic_auth_users:\n  prometheus: {hash}\nhttp_server_config:\n  http2: false\n  headers:\n    \
             X-Frame-Options: deny\n    Strict-Transport-Security: \"\"\nrate_limit:\n  interval: 100ms\n  burst: 5\n"
        ))
        .unwrap();
        assert_eq!(settings.users.get("prometheus").map(String::as_str), Some(hash));
        assert_eq!(settings.headers.len(), 1, "a blank header is unset");
        assert_eq!(settings.rate_limit, Some((Duration::from_millis(100), 5)));
        assert!(!format!("{settings:?}").contains(hash));
        let e = build("basic_auth_users:\n  prometheus: plain-text\n").unwrap_err();
        assert_eq!(e.key, "basic_auth_users.prometheus");
        assert!(!e.to_string().contains("plain-text"), "{e}");
        assert!(build("").unwrap().users.is_empty());
    }

    #[test]
    fn tls_without_files_says_what_is_missing() {
        let e = build("tls_server_config:\n  key_file: k.pem\n").unwrap_err();
        assert_eq!(e.key, "tls_server_config.cert_file");
        let e = build("tls_server_config:\n  min_version: TLS99\n  cert: x\n  key: y\n").unwrap_err();
        assert!(e.key.starts_with("tls_server_config."), "{e}");
    }
}
