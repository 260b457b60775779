//! `redis-healthd check [PATH]`: one GET against a running daemon, for images without a shell
//! or curl (`HEALTHCHECK CMD ["redis-healthd", "check"]`). 2xx is healthy, anything else is
//! not. The path is `/livez` unless given: what an image declares healthy must not depend on
//! Redis, or every engine that restarts unhealthy containers restarts the daemon in an outage.
//! An `https://` URL (the daemon behind `--web.config.file`'s TLS) is asked without verifying
//! the certificate, as the kubelet's HTTPS probes do: the check asks the daemon next to it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::cli::CheckArgs;
use crate::web_config::serves_tls;

/// How much of a reply body is read, to quote its `output` in the one line.
const BODY_LIMIT: usize = 64 * 1024;

/// The URL `check` probes when none is given: `path` on the daemon's port, via loopback when
/// the daemon listens on every address, else via its own address.
pub fn default_url(listen: SocketAddr, path: &str) -> String {
    let ip = match listen.ip() {
        // IPv4 loopback reaches a dual-stack `[::]` socket too, and its IPv4-only fallback.
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}{path}", SocketAddr::new(ip, listen.port()))
}

/// Runs the check: `Ok(line)` on 2xx, `Err(line)` otherwise; either way one line to print.
pub async fn run(args: &CheckArgs) -> Result<String, String> {
    let url = args.url.clone().unwrap_or_else(|| {
        // Over TLS when the daemon's web configuration (the same variable) says so.
        let tls = args.web_config_file.as_deref().is_some_and(serves_tls);
        let url = default_url(args.listen, &args.path);
        if tls {
            url.replacen("http://", "https://", 1)
        } else {
            url
        }
    });
    match tokio::time::timeout(args.timeout, get(&url)).await {
        Err(_) => Err(format!(
            "fail: no answer from {url} within {}",
            humantime::format_duration(args.timeout)
        )),
        Ok(Err(reason)) => Err(format!("fail: {url}: {reason}")),
        Ok(Ok((status, body))) => {
            let line = match output_of(&body) {
                Some(output) => format!("{status} from {url}: {output}"),
                None => format!("{status} from {url}"),
            };
            if status.is_success() {
                Ok(format!("ok: {line}"))
            } else {
                Err(format!("fail: {line}"))
            }
        }
    }
}

/// One GET over a fresh HTTP/1.1 connection.
async fn get(url: &str) -> Result<(hyper::StatusCode, Bytes), String> {
    let uri: Uri = url.parse().map_err(|e| format!("not a valid URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("only http:// and https:// URLs are supported".into()),
    };
    let authority = uri.authority().ok_or("no host in the URL")?.clone();
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    // One stream type for both, so that hyper's client code is built once.
    let stream = if tls {
        let name = rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| format!("{e}"))?;
        let stream = unverified_tls()?
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        tokio_util::either::Either::Right(stream)
    } else {
        tokio_util::either::Either::Left(stream)
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(HOST, authority.as_str())
        .header(
            USER_AGENT,
            concat!("redis-healthd-check/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    // A body that is too long or cut short still leaves the status to judge by.
    let body = Limited::new(response.into_body(), BODY_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok((status, body))
}

/// A TLS client that takes any server certificate (its handshake signatures still checked).
fn unverified_tls() -> Result<tokio_rustls::TlsConnector, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
}

#[derive(Debug)]
struct AnyServer(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The health+json `output` of a reply, if it has one: the reason worth printing.
fn output_of(body: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let output = doc.get("output")?.as_str()?;
    // One line, bounded, whatever the server sent.
    Some(output.chars().filter(|c| !c.is_control()).take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_uses_loopback_for_wildcard_listens() {
        assert_eq!(
            default_url("0.0.0.0:8558".parse().unwrap(), "/livez"),
            "http://127.0.0.1:8558/livez"
        );
        assert_eq!(
            default_url("[::]:9000".parse().unwrap(), "/readyz"),
            "http://127.0.0.1:9000/readyz"
        );
        assert_eq!(
            default_url("10.1.2.3:8558".parse().unwrap(), "/readyz"),
            "http://10.1.2.3:8558/readyz"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_reply_body_yields_at_most_one_bounded_line(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Some(line) = output_of(&body) {
                proptest::prop_assert!(line.chars().count() <= 200);
                proptest::prop_assert!(!line.chars().any(char::is_control));
            }
        }

        #[test]
        fn any_json_output_field_is_one_bounded_line(output in "\\PC{0,400}|[\\x00-\\x1f\\n\\r]{0,40}") {
            let body = serde_json::json!({"status": "fail", "output": output}).to_string();
            let line = output_of(body.as_bytes()).unwrap();
            proptest::prop_assert!(line.chars().count() <= 200 && !line.contains('\n'));
        }
    }

    #[test]
    fn output_is_one_bounded_line() {
        assert_eq!(
            output_of(br#"{"status":"fail","output":"a\nb"}"#).as_deref(),
            Some("ab")
        );
        let long = format!(r#"{{"output":"{}"}}"#, "x".repeat(1000));
        assert_eq!(output_of(long.as_bytes()).map(|o| o.len()), Some(200));
        assert_eq!(output_of(b"not json"), None);
        assert_eq!(output_of(br#"{"output":42}"#), None);
    }
}
