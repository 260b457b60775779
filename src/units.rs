//! The values flags and the targets file share: durations and percentages, parsed with one
//! wording for their errors wherever they are given.

use std::time::Duration;

/// A duration: humantime syntax, and never zero.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (expected e.g. 250ms, 2s, 1m30s)")),
    }
}

/// A percentage: `90%` or `90`, above 0 and at most 100.
pub fn parse_percent(value: &str) -> Result<f64, String> {
    let number = value.trim().strip_suffix('%').unwrap_or(value.trim());
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!(
            "{value:?} is not a percentage above 0 and at most 100 (e.g. 90%)"
        )),
    }
}
