//! fred's errors in words, one line each: Redis's own reply (`WRONGPASS ...`, `LOADING ...`),
//! the OS's message for an I/O error, and rustls's certificate errors made readable. Pure
//! functions of fred's error text, property-tested on arbitrary input.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, UNIX_EPOCH};

use fred::prelude::Error;

/// fred's error as one line: Redis's reply (`WRONGPASS ...`, `LOADING ...`) or the I/O error.
pub fn describe(error: &Error) -> String {
    let details = error.details().trim();
    if details.is_empty() {
        return error.kind().to_str().to_owned();
    }
    let message = io_message(details).unwrap_or(details);
    tls_reason(message).unwrap_or_else(|| message.to_owned())
}

/// Where the flags that fix a TLS failure are named for a targets file too.
const CA_FLAG: &str = "--tls-ca-file (tls_ca_file in a targets file)";
const NAME_FLAG: &str = "--tls-server-name (tls_server_name in a targets file)";
const CLIENT_FLAGS: &str =
    "--tls-cert-file and --tls-key-file (tls_cert_file, tls_key_file in a targets file)";

/// A rustls error, as fred carries it (its `Debug` text), in words: what was expected, what
/// was presented, and the flag that fixes it. `None` for anything not from rustls.
fn tls_reason(debug: &str) -> Option<String> {
    let inner = |name: &str| debug.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')');
    let reason = if let Some(error) = inner("InvalidCertificate") {
        certificate_error(error)
    } else if let Some(alert) = inner("AlertReceived") {
        alert_received(alert)
    } else if let Some(problem) = inner("InvalidMessage") {
        format!(
            "the server did not answer in TLS ({}): is this a plain-text port, for redis:// rather \
             than rediss://?",
            words(problem)
        )
    } else if let Some(problem) = inner("PeerIncompatible").or_else(|| inner("PeerMisbehaved")) {
        format!("the handshake failed: {}", words(problem))
    } else if let Some(text) = inner("General") {
        unquote(text)
    } else {
        return None;
    };
    Some(format!("TLS: {reason}"))
}

/// rustls's `CertificateError`, as its `Debug` names it.
fn certificate_error(debug: &str) -> String {
    let times = |name: &str| -> Option<Vec<String>> {
        let rest = debug.strip_prefix(name)?;
        let times = rest
            .split("UnixTime(")
            .skip(1)
            .map(|t| {
                let secs = t.split(')').next()?.parse::<u64>().ok()?;
                Some(humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string())
            })
            .collect::<Option<Vec<_>>>()?;
        (times.len() == 2).then_some(times)
    };
    // The time of the check is left out: the reason stays the same from one check to the next.
    if let Some(t) = times("ExpiredContext") {
        return format!(
            "the server's certificate expired: not valid after {}; renew it on the server",
            t[1]
        );
    }
    if let Some(t) = times("NotValidYetContext") {
        return format!(
            "the server's certificate is not valid yet: not valid before {}; check this host's clock",
            t[1]
        );
    }
    if let Some(context) = debug.strip_prefix("NotValidForNameContext") {
        return wrong_name(context);
    }
    let variant = debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or(debug);
    match variant {
        "UnknownIssuer" => format!(
            "the server's certificate is not signed by a CA this daemon trusts: give the CA that \
             signed it with {CA_FLAG}"
        ),
        "NotValidForName" => format!(
            "the server's certificate is not for the name or address connected to: set {NAME_FLAG} \
             to a name it has"
        ),
        "Expired" => "the server's certificate has expired; renew it on the server".to_owned(),
        "NotValidYet" => "the server's certificate is not valid yet; check this host's clock".to_owned(),
        "BadSignature" | "BadSignatureContext" => {
            format!("the server's certificate has a bad signature: check {CA_FLAG} and the server's chain")
        }
        "InvalidPurpose" | "InvalidPurposeContext" => {
            "the server's certificate is not one for a TLS server (its extended key usage)".to_owned()
        }
        "Revoked" => "the server's certificate is revoked".to_owned(),
        other => format!("the server's certificate was refused: {}", words(other)),
    }
}

/// `{ expected: DnsName("other.test"), presented: ["DnsName(\"redis.test\")", ...] }`: the
/// names on both sides, and what to do about it.
fn wrong_name(context: &str) -> String {
    let expected = context
        .split("expected: ")
        .nth(1)
        .and_then(|rest| rest.split(", presented: ").next())
        .map(name_of);
    let presented: Vec<String> = context
        .split("presented: [")
        .nth(1)
        .and_then(|rest| rest.rsplit_once(']'))
        .map(|(list, _)| {
            list.split("\", \"")
                .map(|item| name_of(&unquote(item.trim_matches(|c| c == '"' || c == ' '))))
                .filter(|name| !name.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let expected = expected.unwrap_or_else(|| "the name or address connected to".to_owned());
    if presented.is_empty() {
        format!("the server's certificate names no DNS name or IP address, not {expected}")
    } else {
        format!(
            "the server's certificate is for {}, not {expected}: set {NAME_FLAG} to one of those, \
             or connect by that name",
            presented.join(", ")
        )
    }
}

/// A name as rustls's `Debug` writes it, plain: `DnsName("a")`, `IpAddress(127.0.0.1)`,
/// `IpAddress(V4(Ipv4Addr([127, 0, 0, 1])))`, `IpAddress(V6(Ipv6Addr([0, .., 1])))`.
fn name_of(debug: &str) -> String {
    if let Some(start) = debug.find('"') {
        let rest = &debug[start + 1..];
        return unquote(rest.get(..rest.rfind('"').unwrap_or(rest.len())).unwrap_or(rest));
    }
    let bytes = |kind: &str| -> Option<Vec<u8>> {
        let list = debug.split(kind).nth(1)?.split(']').next()?;
        list.split(',').map(|b| b.trim().parse().ok()).collect()
    };
    if let Some(b) = bytes("Ipv4Addr([").and_then(|b| <[u8; 4]>::try_from(b).ok()) {
        return Ipv4Addr::from(b).to_string();
    }
    if let Some(b) = bytes("Ipv6Addr([").and_then(|b| <[u8; 16]>::try_from(b).ok()) {
        return Ipv6Addr::from(b).to_string();
    }
    let plain = debug
        .trim()
        .trim_start_matches("IpAddress(")
        .trim_start_matches("DnsName(");
    plain.trim_end_matches(')').to_owned()
}

/// What the server's TLS alert says about the fix.
fn alert_received(alert: &str) -> String {
    match alert {
        "CertificateRequired" => {
            format!("the server asks for a client certificate: give one with {CLIENT_FLAGS}")
        }
        "BadCertificate" | "UnknownCA" | "CertificateUnknown" | "DecryptError" | "UnsupportedCertificate" => {
            format!(
                "the server refused this daemon's client certificate ({}): give one its CA trusts with \
             {CLIENT_FLAGS}",
                words(alert)
            )
        }
        "CertificateExpired" => {
            format!("the server refused this daemon's client certificate as expired: renew {CLIENT_FLAGS}")
        }
        "ProtocolVersion" | "HandshakeFailure" | "InsufficientSecurity" => format!(
            "the server refused the handshake ({}): no TLS version or cipher suite in common (this \
             daemon speaks TLS 1.2 and 1.3), or it wants a client certificate ({CLIENT_FLAGS})",
            words(alert)
        ),
        other => format!("the server ended the handshake ({})", words(other)),
    }
}

/// `UnknownCA` → `unknown CA`, `BadEncoding` → `bad encoding`: a variant name in words.
fn words(name: &str) -> String {
    // rustls's names are ASCII identifiers.
    let name = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or(name)
        .as_bytes();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in name.iter().enumerate() {
        let upper = c.is_ascii_uppercase();
        let after_lower = i > 0 && name[i - 1].is_ascii_lowercase();
        let acronym_ends =
            i > 0 && name[i - 1].is_ascii_uppercase() && name.get(i + 1).is_some_and(u8::is_ascii_lowercase);
        if i > 0 && upper && (after_lower || acronym_ends) {
            out.push(' ');
        }
        // An acronym (`CA`) keeps its capitals; a word's first capital goes.
        let in_acronym = upper
            && (name.get(i + 1).is_some_and(u8::is_ascii_uppercase)
                || (i > 0
                    && name[i - 1].is_ascii_uppercase()
                    && !name.get(i + 1).is_some_and(u8::is_ascii_lowercase)));
        out.push(char::from(if in_acronym { c } else { c.to_ascii_lowercase() }));
    }
    out
}

/// A `Debug`-quoted string's content: `\"` and `\\` unescaped.
fn unquote(text: &str) -> String {
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// fred carries I/O errors as their `Debug` text (`Os { code: 111, kind: ConnectionRefused,
/// message: "Connection refused" }`, `Custom { kind: InvalidData, error: AlertReceived(..) }`):
/// keep the human part.
fn io_message(details: &str) -> Option<&str> {
    let quoted = ["message: \"", "error: \""].iter().find_map(|key| {
        let start = details.find(key)? + key.len();
        let len = details[start..].find('"')?;
        Some(&details[start..start + len])
    });
    quoted.or_else(|| {
        let rest = details.strip_prefix("Custom { kind: ")?;
        rest.get(rest.find(", error: ")? + ", error: ".len()..)?
            .strip_suffix(" }")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::prelude::ErrorKind;

    proptest::proptest! {
        #[test]
        fn any_error_text_is_described_without_panicking(details in "\\PC{0,120}") {
            let described = describe(&Error::new(ErrorKind::IO, details.clone()));
            proptest::prop_assert!(details.contains(described.trim()) || described == "IO Error");
        }
    }

    #[test]
    fn io_errors_read_as_their_message() {
        let refused = r#"Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }"#;
        assert_eq!(io_message(refused), Some("Connection refused"));
        let dns = r#"Custom { kind: Uncategorized, error: "failed to lookup address information: Name or service not known" }"#;
        assert_eq!(
            io_message(dns),
            Some("failed to lookup address information: Name or service not known")
        );
        assert_eq!(io_message("WRONGPASS invalid username-password pair"), None);
        let e = Error::new(ErrorKind::IO, refused);
        assert_eq!(describe(&e), "Connection refused");
        assert_eq!(
            describe(&Error::new(ErrorKind::Auth, "WRONGPASS invalid")),
            "WRONGPASS invalid"
        );
        let described = |error: &str| {
            describe(&Error::new(
                ErrorKind::IO,
                format!("Custom {{ kind: InvalidData, error: {error} }}"),
            ))
        };
        assert_eq!(
            described("InvalidCertificate(UnknownIssuer)"),
            "TLS: the server's certificate is not signed by a CA this daemon trusts: give the CA \
             that signed it with --tls-ca-file (tls_ca_file in a targets file)"
        );
        assert_eq!(
            described("InvalidCertificate(ExpiredContext { time: UnixTime(1795668275), not_after: UnixTime(1735776000) })"),
            "TLS: the server's certificate expired: not valid after 2025-01-02T00:00:00Z; renew it on the server"
        );
        assert_eq!(
            described("AlertReceived(CertificateRequired)"),
            "TLS: the server asks for a client certificate: give one with --tls-cert-file and \
             --tls-key-file (tls_cert_file, tls_key_file in a targets file)"
        );
        assert!(described("AlertReceived(UnknownCA)")
            .starts_with("TLS: the server refused this daemon's client certificate (unknown CA)"));
        assert_eq!(words("BadEncoding"), "bad encoding");
        assert_eq!(words("CAUnknown"), "CA unknown");
        assert_eq!(
            words("UnhandledCriticalExtension"),
            "unhandled critical extension"
        );
        assert!(described("InvalidMessage(InvalidContentType)")
            .contains("(invalid content type): is this a plain-text port"));
    }

    /// The names on both sides of a name mismatch, in each form rustls writes them.
    #[test]
    fn a_name_mismatch_names_both_sides_and_the_flag() {
        let described = |error: &str| {
            describe(&Error::new(
                ErrorKind::IO,
                format!("Custom {{ kind: InvalidData, error: {error} }}"),
            ))
        };
        let by_name = r#"InvalidCertificate(NotValidForNameContext { expected: DnsName("other.test"), presented: ["DnsName(\"redis.test\")", "IpAddress(127.0.0.1)"] })"#;
        assert_eq!(
            described(by_name),
            "TLS: the server's certificate is for redis.test, 127.0.0.1, not other.test: set \
             --tls-server-name (tls_server_name in a targets file) to one of those, or connect by that name"
        );
        let by_ip = r#"InvalidCertificate(NotValidForNameContext { expected: IpAddress(V4(Ipv4Addr([127, 0, 0, 1]))), presented: ["DnsName(\"redis.internal\")"] })"#;
        assert!(
            described(by_ip).starts_with(
                "TLS: the server's certificate is for redis.internal, not 127.0.0.1: set --tls-server-name"
            ),
            "{}",
            described(by_ip)
        );
        let v6 = r#"InvalidCertificate(NotValidForNameContext { expected: IpAddress(V6(Ipv6Addr([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]))), presented: [] })"#;
        assert_eq!(
            described(v6),
            "TLS: the server's certificate names no DNS name or IP address, not ::1"
        );
        for text in [by_name, by_ip, v6] {
            let out = described(text);
            assert!(
                !out.contains('(') || out.contains("(tls_server_name"),
                "no Debug left: {out}"
            );
            assert!(!out.contains("DnsName") && !out.contains("Ipv4Addr"), "{out}");
        }
    }
}
