//! The health+json document (draft-inadarei-api-health-check): the full document with one
//! entry per component of every named check, and the summary (status and output) the probe
//! endpoints answer. Rendered once per round into the snapshot, never per request.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

use crate::health::{millis, ObservedValue, Status, Verdict};

/// The `serviceId` of every document.
const SERVICE_ID: &str = "redis-healthd";

/// The health+json document's top level.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    status: Status,
    version: &'static str,
    service_id: &'static str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<BTreeMap<&'a str, Vec<Entry<'a>>>>,
}

/// One entry of a check's array.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    component_id: &'a str,
    component_type: &'static str,
    /// Which server answered (`redis 7.0.15`, `valkey 8.1.8`): an extra member, as the draft
    /// allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_value: Option<Value<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_unit: Option<&'static str>,
    status: Status,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_success: Option<String>,
}

/// An `observedValue`: a number or a word.
#[derive(Serialize)]
#[serde(untagged)]
enum Value<'a> {
    Number(f64),
    Integer(u64),
    Text(&'a str),
}

/// An observed value as the document shows it: value and unit.
fn observed(value: &ObservedValue) -> Option<(Value<'_>, Option<&'static str>)> {
    match value {
        ObservedValue::RoundTrip(d) => Some((Value::Number(millis(*d)), Some("ms"))),
        ObservedValue::Percent(p) => Some((Value::Number((p * 10.0).round() / 10.0), Some("%"))),
        ObservedValue::Bytes(b) => Some((Value::Integer(*b), Some("bytes"))),
        ObservedValue::Seconds(s) => Some((Value::Integer(*s), Some("s"))),
        ObservedValue::Text(t) => Some((Value::Text(t), None)),
        ObservedValue::Nothing => None,
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Renders `{"status":...,"output":...}` plus the fixed fields: the body of the probe endpoints.
pub fn render_summary(status: Status, description: &str, output: Option<String>) -> Bytes {
    render(&Document {
        status,
        version: env!("CARGO_PKG_VERSION"),
        service_id: SERVICE_ID,
        description,
        output,
        checks: None,
    })
}

fn render(doc: &Document<'_>) -> Bytes {
    // Serializing plain structs with string keys cannot fail.
    Bytes::from(serde_json::to_vec(doc).unwrap_or_default())
}

/// The full document for a verdict, `checks` included.
pub fn render_document(verdict: &Verdict, description: &str) -> Bytes {
    let checks = verdict
        .checks
        .iter()
        .map(|check| {
            let entries = check
                .components
                .iter()
                .map(|c| {
                    let s = &c.state;
                    let (observed_value, observed_unit) =
                        match s.outcome.result.as_ref().ok().and_then(|r| observed(&r.value)) {
                            Some((value, unit)) => (Some(value), unit),
                            None => (None, None),
                        };
                    Entry {
                        component_id: &c.id,
                        component_type: c.kind,
                        server: c.server.as_deref(),
                        observed_value,
                        observed_unit,
                        status: s.latest,
                        time: rfc3339(s.outcome.at),
                        output: match &s.outcome.result {
                            Err(_) => s.output.as_deref(),
                            Ok(_) => s.output.as_deref().filter(|_| s.status != Status::Pass),
                        },
                        consecutive_failures: s.consecutive_failures,
                        last_success: s.last_success.map(rfc3339),
                    }
                })
                .collect();
            (check.name, entries)
        })
        .collect();
    render(&Document {
        status: verdict.status(),
        version: env!("CARGO_PKG_VERSION"),
        service_id: SERVICE_ID,
        description,
        output: verdict.output(),
        checks: Some(checks),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::fixtures::*;
    use crate::health::{Component, Failure, NamedCheck, Outcome, Reading, Tracker};
    use std::time::Duration;

    #[test]
    fn document_follows_health_json() {
        let mut tracker = Tracker::new(T);
        tracker.observe(ok(1));
        let state = tracker.observe(Outcome {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_002),
            result: Err(Failure::Timeout(Duration::from_millis(500))),
        });
        let body = render_document(&verdict(state), "Redis at redis://:***@127.0.0.1:6379");
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["status"], "fail");
        assert_eq!(doc["serviceId"], "redis-healthd");
        assert_eq!(doc["output"], "redis:responseTime: timed out after 500ms");
        let entry = &doc["checks"]["redis:responseTime"][0];
        assert_eq!(entry["componentId"], "redis://:***@127.0.0.1:6379");
        assert_eq!(entry["componentType"], "datastore");
        assert_eq!(entry["status"], "fail");
        assert_eq!(entry["time"], "2023-11-14T22:13:22.000Z");
        assert_eq!(entry["lastSuccess"], "2023-11-14T22:13:20.000Z");
        assert_eq!(entry["consecutiveFailures"], 1);
        assert!(entry.get("observedValue").is_none());

        let mut tracker = Tracker::new(T);
        let body = render_document(&verdict(tracker.observe(ok(2))), "d");
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let entry = &doc["checks"]["redis:responseTime"][0];
        assert_eq!(
            (entry["observedValue"].as_f64(), &entry["observedUnit"]),
            (Some(2.0), &"ms".into())
        );
        assert!(doc.get("output").is_none() && entry.get("output").is_none());
    }

    #[test]
    fn observed_values_render_with_their_units() {
        let render = |value: ObservedValue| {
            let state = Tracker::new(T).observe(Outcome {
                at: SystemTime::UNIX_EPOCH,
                result: Ok(Reading::pass(value)),
            });
            let doc: serde_json::Value =
                serde_json::from_slice(&render_document(&verdict(state), "d")).unwrap();
            let entry = &doc["checks"]["redis:responseTime"][0];
            (entry["observedValue"].to_string(), entry["observedUnit"].clone())
        };
        assert_eq!(
            render(ObservedValue::Bytes(1_025_928)),
            ("1025928".into(), "bytes".into())
        );
        assert_eq!(render(ObservedValue::Percent(95.04)), ("95.0".into(), "%".into()));
        assert_eq!(render(ObservedValue::Seconds(3)), ("3".into(), "s".into()));
        assert_eq!(
            render(ObservedValue::Text("master".into())),
            ("\"master\"".into(), serde_json::Value::Null)
        );
        assert_eq!(
            render(ObservedValue::Nothing),
            ("null".into(), serde_json::Value::Null)
        );
    }

    #[test]
    fn several_components_are_named_in_the_output_and_the_worst_wins() {
        let node = |id: &str, outcome: Outcome| Component {
            id: id.into(),
            kind: "datastore",
            server: None,
            state: Tracker::new(T).observe(outcome),
        };
        let verdict = Verdict {
            checks: vec![NamedCheck {
                readiness: true,
                name: "redis:responseTime",
                components: vec![
                    node("redis://10.0.0.1:6379", ok(1)),
                    node("redis://10.0.0.2:6379", err("Connection refused")),
                    node("redis://10.0.0.3:6379", ok(150)),
                ],
            }],
        };
        assert_eq!(verdict.status(), Status::Fail);
        let doc: serde_json::Value = serde_json::from_slice(&render_document(&verdict, "d")).unwrap();
        assert_eq!(
            doc["output"],
            "redis:responseTime redis://10.0.0.2:6379: Connection refused; \
             redis:responseTime redis://10.0.0.3:6379: slow PONG: 150ms is over the warn latency 100ms"
        );
        let entries = doc["checks"]["redis:responseTime"].as_array().unwrap();
        let statuses: Vec<_> = entries
            .iter()
            .map(|e| (&e["componentId"], &e["status"]))
            .collect();
        assert_eq!(
            statuses,
            [
                (&"redis://10.0.0.1:6379".into(), &"pass".into()),
                (&"redis://10.0.0.2:6379".into(), &"fail".into()),
                (&"redis://10.0.0.3:6379".into(), &"warn".into()),
            ]
        );
    }
}
