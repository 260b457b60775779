//! fred's errors in words, one line each: Redis's own reply (`WRONGPASS ...`, `LOADING ...`),
//! the OS's message for an I/O error, and rustls's certificate errors made readable. Pure
//! functions of fred's error text, property-tested on arbitrary input.

use std::time::{Duration, UNIX_EPOCH};

use fred::prelude::Error;

/// fred's error as one line: Redis's reply (`WRONGPASS ...`, `LOADING ...`) or the I/O error.
pub fn describe(error: &Error) -> String {
    let details = error.details().trim();
    if details.is_empty() {
        return error.kind().to_str().to_owned();
    }
    let message = io_message(details).unwrap_or(details);
    // rustls errors arrive as their Debug names; say what they are.
    if let Some(inner) = message
        .strip_prefix("InvalidCertificate(")
        .and_then(|m| m.strip_suffix(')'))
    {
        format!("TLS: invalid server certificate: {}", certificate_error(inner))
    } else if let Some(inner) = message
        .strip_prefix("AlertReceived(")
        .and_then(|m| m.strip_suffix(')'))
    {
        format!("TLS: the server refused the handshake: {inner}")
    } else {
        message.to_owned()
    }
}

/// rustls's certificate error as its `Debug` names it, with the times of `ExpiredContext` and
/// `NotValidYetContext` made readable, `Expired: not valid after 2025-01-02T00:00:00Z` (the
/// time of the check is left out: the reason stays the same from one check to the next).
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
    if let Some(t) = times("ExpiredContext") {
        format!("Expired: not valid after {}", t[1])
    } else if let Some(t) = times("NotValidYetContext") {
        format!("NotValidYet: not valid before {}", t[1])
    } else {
        debug.to_owned()
    }
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
        let tls = "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }";
        assert_eq!(
            describe(&Error::new(ErrorKind::IO, tls)),
            "TLS: invalid server certificate: UnknownIssuer"
        );
        let expired = "Custom { kind: InvalidData, error: InvalidCertificate(ExpiredContext { time: UnixTime(1795668275), not_after: UnixTime(1735776000) }) }";
        assert_eq!(
            describe(&Error::new(ErrorKind::IO, expired)),
            "TLS: invalid server certificate: Expired: not valid after 2025-01-02T00:00:00Z"
        );
        let alert = "Custom { kind: InvalidData, error: AlertReceived(CertificateRequired) }";
        assert_eq!(
            describe(&Error::new(ErrorKind::IO, alert)),
            "TLS: the server refused the handshake: CertificateRequired"
        );
        let e = Error::new(ErrorKind::IO, refused);
        assert_eq!(describe(&e), "Connection refused");
        assert_eq!(
            describe(&Error::new(ErrorKind::Auth, "WRONGPASS invalid")),
            "WRONGPASS invalid"
        );
    }
}
