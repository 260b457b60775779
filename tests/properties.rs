//! Property tests: for any URL with a password, nothing the daemon renders from its
//! configuration (Debug, Display, logs' fields, the health document, metrics, error messages)
//! contains the password, raw or percent-encoded.

use std::time::{Instant, SystemTime};

use proptest::prelude::*;
use redis_healthd::cli::Cli;
use redis_healthd::config::Config;
use redis_healthd::document::render_document;
use redis_healthd::health::{Component, Failure, NamedCheck, Outcome, Thresholds, Tracker, Verdict};
use redis_healthd::metrics::Metrics;
use redis_healthd::snapshot::Snapshot;
use url::Url;

fn parse(args: &[&str]) -> Result<Config, String> {
    let cli = Cli::parse_args(std::iter::once("redis-healthd").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    Config::from_flags(cli.serve.flags()).map_err(|e| e.to_string())
}

/// Everything the daemon renders from a configuration.
fn outputs(config: &Config) -> Vec<String> {
    let description = redis_healthd::monitor::description(config);
    let mut tracker = Tracker::new(Thresholds {
        failure: 1,
        success: 1,
    });
    let state = tracker.observe(Outcome {
        at: SystemTime::now(),
        result: Err(Failure::Error("WRONGPASS invalid username-password pair".into())),
    });
    let names: Vec<&'static str> = config.targets.iter().map(|t| t.name).collect();
    let metrics = Metrics::new(config.timeout, &names);
    let verdict = Verdict {
        checks: vec![NamedCheck {
            name: config.targets[0].checks.names.response_time,
            components: vec![Component {
                id: config.targets[0].redis.redacted().to_owned(),
                kind: "datastore",
                server: None,
                state,
            }],
            readiness: true,
        }],
    };
    metrics.record(config.targets[0].name, &verdict);
    metrics.record_statuses(&verdict);
    let snapshot = Snapshot::new(
        Instant::now(),
        verdict.clone(),
        &description,
        false,
        &Default::default(),
    );
    vec![
        format!("{config:?}"),
        format!("{:?}", config.targets[0].redis),
        config.targets[0].redis.to_string(),
        description.clone(),
        String::from_utf8_lossy(&render_document(&verdict, &description)).into_owned(),
        String::from_utf8_lossy(&snapshot.summary).into_owned(),
        String::from_utf8_lossy(&snapshot.document()).into_owned(),
        String::from_utf8_lossy(&snapshot.page()).into_owned(),
        String::from_utf8_lossy(&metrics.encode(false, false).0).into_owned(),
    ]
}

/// For the parse of a URL holding `password` (`encoded` as the URL carries it): no output of
/// the configuration, nor what `more` renders from it, holds either; a refusal (only for a raw
/// `%`, which can decode to invalid UTF-8) holds neither.
fn assert_no_leak(
    parsed: Result<Config, String>,
    password: &str,
    encoded: &str,
    more: impl Fn(&Config) -> Result<Vec<String>, TestCaseError>,
) -> Result<(), TestCaseError> {
    match parsed {
        Ok(config) => {
            for out in outputs(&config).into_iter().chain(more(&config)?) {
                prop_assert!(!out.contains(password) && !out.contains(encoded), "leak in {out}");
            }
        }
        Err(e) => {
            prop_assert!(password.contains('%'), "refused: {e}");
            prop_assert!(!e.contains(password) && !e.contains(encoded), "leak in {e}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_password_in_the_url_never_reaches_any_output(
        user in "[a-z]{0,8}",
        password in "[A-Za-z0-9!@#$%^&*()_+=:;/?~-]{8,24}",
        host in "[a-z]{1,12}",
        port in 1u16..,
        db in 0u8..16,
    ) {
        let mut url = Url::parse(&format!("redis://{host}:{port}/{db}")).unwrap();
        url.set_username(&user).unwrap();
        url.set_password(Some(&password)).unwrap();
        let encoded = url.password().unwrap().to_owned();
        // A raw '%' in a password can decode to invalid UTF-8: then the URL is refused.
        assert_no_leak(parse(&["--redis-url", url.as_str()]), &password, &encoded, |_| Ok(vec![]))?;
        // The same URL as a named target (flag and environment): nothing either.
        let target = format!("cache={}", url.as_str());
        assert_no_leak(parse(&["--target", &target]), &password, &encoded, |_| Ok(vec![]))?;
        // A URL given to --target without a name is refused without echoing it.
        let e = parse(&["--target", url.as_str()]).err().unwrap_or_default();
        prop_assert!(
            e == "--target: expected NAME=URL (e.g. cache=redis://cache:6379): the value has no `=`"
                || e.starts_with("--target: expected NAME=URL with NAME of 1 to 64 of a-z"),
            "{e}"
        );
        // The same credentials on a cluster URL: nor its seeds' componentIds.
        let mut cluster = Url::parse(&format!("redis-cluster://{host}:{port}?node={host}:{}", port / 2 + 1)).unwrap();
        cluster.set_username(&user).unwrap();
        cluster.set_password(Some(&password)).unwrap();
        assert_no_leak(parse(&["--redis-url", cluster.as_str()]), &password, &encoded, |config| {
            let redis = &config.targets[0].redis;
            let seeds = redis.cluster_seeds().unwrap_or_default();
            prop_assert!(!seeds.is_empty());
            Ok(seeds.iter().map(|s| redis.server_url(s)).collect())
        })?;
        // Refused variants: the error names the flag, never the password.
        let refused = [
            url.as_str().replacen("redis://", "http://", 1),
            url.as_str().replacen("redis://", "rediss://", 1),
            format!("{}/extra?x=1", url.as_str()),
            url.as_str().replacen(&format!(":{port}"), ":99999", 1),
        ];
        for bad in refused {
            if let Err(e) = parse(&["--redis-url", &bad]) {
                prop_assert!(e.contains("--redis-url"), "{e}");
                prop_assert!(!e.contains(&password) && !e.contains(&encoded), "leak in {e}");
            }
        }
    }

    #[test]
    fn a_password_in_a_query_parameter_is_redacted(password in "[A-Za-z0-9]{8,24}") {
        let url = format!("redis-sentinel://127.0.0.1:26379/0?sentinelServiceName=m&sentinelPassword={password}");
        let target = redis_healthd::address::RedisAddress::new(
            &url,
            None,
            None,
            None,
            &Default::default(),
            None,
            (&Default::default(), "redis"),
        );
        if let Ok(target) = target {
            prop_assert!(!target.redacted().contains(&password));
            let debug = format!("{target:?}");
            prop_assert!(!debug.contains(&password));
        }
        prop_assert!(!redis_healthd::address::redact(&Url::parse(&url).unwrap()).contains(&password));
    }
}

/// The runs of letters and digits of `secret` at least 4 long: what a quote of any part of it
/// would show.
fn pieces(secret: &str) -> Vec<&str> {
    secret
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| p.len() >= 4)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A password written raw into a `--target` URL, from every printable character (`,`, `@`,
    /// `:`, `/`, `=` included): whether the URL parses or not, no error quotes a piece of it.
    /// On the command line a comma never splits the value (in REDIS_HEALTHD_TARGETS it
    /// separates targets).
    #[test]
    fn a_raw_password_in_a_target_never_shows_in_an_error(
        password in "[ -~]{0,6}[A-Za-z0-9]{4,8}[ -~]{0,6}[A-Za-z0-9]{4,8}[ -~]{0,6}",
    ) {
        let value = format!("queue=redis://app:{password}@127.0.0.1:6379");
        if let Err(e) = parse(&["--target", &value]) {
            for piece in pieces(&password) {
                prop_assert!(!e.contains(piece), "{piece:?} of the password in: {e}");
            }
        }
    }
}

/// The case from the issue: a comma in the password on the command line is part of the URL, not
/// a second target, and nothing of the password is quoted.
#[test]
fn a_comma_in_a_password_on_the_command_line_is_part_of_the_url() {
    let config = parse(&["--target", "q=redis://app:12,secret@127.0.0.1:6379"]).unwrap();
    assert_eq!(config.targets.len(), 1);
    assert_eq!(
        config.targets[0].redis.redacted(),
        "redis://app:***@127.0.0.1:6379"
    );
    // A URL without a name is refused without echoing any of it.
    let e = parse(&["--target", "redis://app:12,secret@127.0.0.1:6379"]).unwrap_err();
    assert!(!e.contains("secret") && !e.contains("12"), "{e}");
}
