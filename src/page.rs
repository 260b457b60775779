//! The status page for people (`GET /` from a browser): one self-contained HTML document, no
//! script and no external assets (it must work in an air-gapped cluster), refreshed by
//! `<meta http-equiv="refresh">`. Rendered once per check from the verdict and the [`History`]
//! of recent PING round trips; every text from Redis or the network is escaped.

use std::fmt::Write;
use std::time::SystemTime;

use bytes::Bytes;

use crate::health::{Status, Verdict};

/// Seconds between the page's own reloads.
const REFRESH_SECONDS: u32 = 5;
/// The sparkline's drawing area, in SVG user units.
const WIDTH: f32 = 720.0;
const HEIGHT: f32 = 60.0;

/// The PING round trips of the last [`HISTORY`] checks, in a fixed ring (no allocation after
/// start): the status page draws them.
#[derive(Clone, Debug)]
pub struct History {
    samples: [Sample; HISTORY],
    next: usize,
}

/// How many checks the status page shows: three minutes at the default interval.
pub const HISTORY: usize = 180;

/// One check in the history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sample {
    /// No check yet in this slot.
    Empty,
    /// The slowest PONG of the check (of every cluster primary), milliseconds.
    RoundTrip(f32),
    /// No PONG from some component.
    Failed,
}

impl Default for History {
    fn default() -> Self {
        Self {
            samples: [Sample::Empty; HISTORY],
            next: 0,
        }
    }
}

impl History {
    /// Records a check's `responseTime` components (of every target: the slowest PONG).
    pub fn record(&mut self, verdict: &Verdict) {
        let mut sample = Sample::Empty;
        for component in verdict.components_of(crate::names::RESPONSE_TIME) {
            sample = match (&component.state.outcome.result, sample) {
                (Err(_), _) | (_, Sample::Failed) => Sample::Failed,
                (Ok(reading), previous) => {
                    let rtt = reading.value.round_trip().unwrap_or_default().as_secs_f32() * 1e3;
                    match previous {
                        Sample::RoundTrip(worst) => Sample::RoundTrip(worst.max(rtt)),
                        _ => Sample::RoundTrip(rtt),
                    }
                }
            };
        }
        self.samples[self.next] = sample;
        self.next = (self.next + 1) % HISTORY;
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        self.samples[self.next..]
            .iter()
            .chain(&self.samples[..self.next])
            .copied()
    }
}

/// Renders the page: the overall status in words and colour, why it is not `pass`, each
/// check's components (status, observed value, reason), the time of the last check, and the
/// PING round trips of the last few minutes.
pub fn render(
    description: &str,
    status: Status,
    output: Option<&str>,
    verdict: Option<&Verdict>,
    history: Option<&History>,
) -> Bytes {
    let (class, headline) = match status {
        Status::Pass => ("pass", "Redis is healthy"),
        Status::Warn => ("warn", "Redis is usable, with warnings"),
        Status::Fail => ("fail", "Redis is not usable"),
    };
    let mut html = String::with_capacity(8 * 1024);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>{status}: redis-healthd</title><style>{STYLE}</style></head><body>\
         <header class=\"{class}\"><h1 id=\"status\">{headline}</h1><p>{description}</p>",
        status = class,
        description = escape(description),
    );
    if let Some(output) = output {
        let _ = write!(html, "<p id=\"output\">{}</p>", escape(output));
    }
    let last = verdict.and_then(|v| {
        v.checks
            .iter()
            .flat_map(|c| &c.components)
            .map(|c| c.state.outcome.at)
            .max()
    });
    if let Some(at) = last {
        let _ = write!(
            html,
            "<p>Last check <time id=\"checked\">{}</time>; this page reloads every {REFRESH_SECONDS} s.</p>",
            rfc3339(at)
        );
    }
    html.push_str("</header><main>");
    if let Some(history) = history {
        sparkline(&mut html, history);
    }
    if let Some(verdict) = verdict {
        html.push_str(
            "<table id=\"checks\"><thead><tr><th>Check</th><th>Component</th><th>Status</th>\
             <th>Observed</th><th>Reason</th></tr></thead><tbody>",
        );
        for check in &verdict.checks {
            for component in &check.components {
                let state = &component.state;
                let observed = state
                    .outcome
                    .result
                    .as_ref()
                    .ok()
                    .and_then(|r| r.value.describe())
                    .unwrap_or_default();
                let _ = write!(
                    html,
                    "<tr class=\"{status}\"><td>{name}</td><td>{id}</td><td class=\"status\">{status}</td>\
                     <td>{observed}</td><td>{reason}</td></tr>",
                    status = label(state.status),
                    name = escape(check.name),
                    id = escape(&component.id),
                    observed = escape(&observed),
                    reason = escape(state.output.as_deref().unwrap_or_default()),
                );
            }
        }
        html.push_str("</tbody></table>");
    }
    let _ = writeln!(
        html,
        "</main><footer>redis-healthd {} · <a href=\"/health\">/health</a> · \
         <a href=\"/readyz?verbose\">/readyz?verbose</a> · <a href=\"/metrics\">/metrics</a></footer>\
         </body></html>",
        env!("CARGO_PKG_VERSION")
    );
    Bytes::from(html)
}

/// The round trips as an inline SVG: a line through the PONGs, a red tick per failed check.
fn sparkline(html: &mut String, history: &History) {
    let samples: Vec<Sample> = history.samples().collect();
    let slowest = samples
        .iter()
        .filter_map(|s| match s {
            Sample::RoundTrip(ms) => Some(*ms),
            _ => None,
        })
        .fold(0.0f32, f32::max);
    let pongs = slowest > 0.0;
    let slowest = slowest.max(0.001);
    let step = WIDTH / (HISTORY - 1) as f32;
    let _ = write!(
        html,
        // Stretched to the page's width (the strokes keep their width): `meet` would centre it.
        "<figure><svg id=\"sparkline\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" height=\"{HEIGHT}\" \
         preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"PING round trips of the last {HISTORY} checks\">"
    );
    let mut line = String::new();
    for (i, sample) in samples.iter().enumerate() {
        let x = i as f32 * step;
        match sample {
            Sample::RoundTrip(ms) => {
                let y = HEIGHT - 2.0 - ms / slowest * (HEIGHT - 4.0);
                let _ = write!(line, "{x:.1},{y:.1} ");
            }
            Sample::Failed => {
                flush_line(html, &mut line);
                let _ = write!(
                    html,
                    "<line class=\"failed\" x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{HEIGHT}\"/>"
                );
            }
            Sample::Empty => flush_line(html, &mut line),
        }
    }
    flush_line(html, &mut line);
    let scale = if pongs {
        format!("slowest {slowest:.3} ms at the top")
    } else {
        "no PONG yet".to_owned()
    };
    let _ = write!(
        html,
        "</svg><figcaption>PING round trip of the last {HISTORY} checks ({scale}; red: no PONG)\
         </figcaption></figure>"
    );
}

fn flush_line(html: &mut String, points: &mut String) {
    if !points.is_empty() {
        let _ = write!(html, "<polyline points=\"{}\"/>", points.trim_end());
        points.clear();
    }
}

fn label(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Text as HTML: `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The status page's `Content-Security-Policy`: nothing but its own inline style (by hash), no
/// script, no frame, no form, no other resource.
pub fn content_security_policy() -> String {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA256, STYLE.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}\
header{padding:1em 1.5em;color:#fff}header p{margin:.3em 0}h1{margin:0;font-size:1.6em}\
.pass header,header.pass{background:#1e8e3e}header.warn{background:#b06000}header.fail{background:#c5221f}\
main{padding:1em 1.5em}figure{margin:0 0 1em}svg{background:#fff;border:1px solid #ddd}\
polyline{fill:none;stroke:#1a73e8;stroke-width:1.5;vector-effect:non-scaling-stroke}\
line.failed{stroke:#c5221f;stroke-width:2;vector-effect:non-scaling-stroke}\
figcaption{color:#555;font-size:.85em}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.4em .6em;border-bottom:1px solid #e5e5e5;vertical-align:top}\
td.status{font-weight:600}tr.pass td.status{color:#1e8e3e}tr.warn td.status{color:#b06000}\
tr.fail td.status{color:#c5221f}footer{padding:0 1.5em 1.5em;color:#555;font-size:.85em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn the_history_is_a_fixed_ring_oldest_first() {
        let mut history = History::default();
        assert!(history.samples().all(|s| s == Sample::Empty));
        for _ in 0..HISTORY + 2 {
            history.samples[history.next] = Sample::RoundTrip(1.0);
            history.next = (history.next + 1) % HISTORY;
        }
        history.samples[history.next] = Sample::Failed;
        history.next = (history.next + 1) % HISTORY;
        let samples: Vec<Sample> = history.samples().collect();
        assert_eq!(samples.len(), HISTORY);
        assert_eq!(samples.last(), Some(&Sample::Failed));
    }

    #[test]
    fn the_caption_says_no_pong_until_one_came() {
        let mut history = History::default();
        history.samples[0] = Sample::Failed;
        let mut html = String::new();
        sparkline(&mut html, &history);
        assert!(
            html.contains("(no PONG yet;") && !html.contains("slowest"),
            "{html}"
        );
        history.samples[1] = Sample::RoundTrip(0.25);
        let mut html = String::new();
        sparkline(&mut html, &history);
        assert!(html.contains("slowest 0.250 ms at the top"), "{html}");
    }

    #[test]
    fn a_hostile_reason_is_shown_as_text() {
        let page = render(
            "d",
            Status::Fail,
            Some("role is replica of <script>alert(1)</script>:6379"),
            None,
            None,
        );
        let page = String::from_utf8_lossy(&page);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
