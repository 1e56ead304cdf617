//! idmap-overlay: overlayfs mounts whose lower layers are seen through an
//! idmapped mount, with crash-safe state under /run. See ARCHITECTURE in the
//! README for the map of these modules.

pub mod atomic_write;
mod cancel;
mod error;
pub mod features;
pub mod findings;
pub mod gc;
pub mod idmap;
pub mod mount;
pub mod mountinfo;
pub mod namespaces;
pub mod overlay;
mod resolve;
pub mod state;
mod strategy;
mod sys;
// The test points are the tests' to name (their lists are what the tests
// iterate over); nothing else sees them.
#[cfg(feature = "testpoints")]
#[doc(hidden)]
pub mod testpoint;
#[cfg(not(feature = "testpoints"))]
mod testpoint;
pub mod umount;
mod unmount;
mod userns;

pub use cancel::Cancel;
pub use error::{Error, ErrorKind, Result};

use std::time::Duration;

/// An io error as a short phrase: "no such file or directory".
pub fn describe_io(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err.to_string(),
    }
}

/// A duration as people write it: `300ms`, `2.5s`, `1m30s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        let tenths = (ms + 50) / 100;
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Parses `2.5s`, `300ms`, `1m`, `1m30s`, `2h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let not_a_duration = || format!("{text:?} is not a duration (e.g. 2.5s, 300ms, 1m)");
    let mut rest = text;
    let mut seconds = 0.0;
    if rest.is_empty() {
        return Err(not_a_duration());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| not_a_duration())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        seconds += match unit {
            "" if after.is_empty() && rest.len() == text.len() => value,
            "s" => value,
            "ms" => value / 1000.0,
            "m" | "min" => value * 60.0,
            "h" => value * 3600.0,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
                ));
            }
        };
        rest = after;
    }
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("{text:?} is too long a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        for (d, text) in [
            (Duration::ZERO, "0ms"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_millis(2500), "2.5s"),
            (Duration::from_secs(3), "3s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "1m30s"),
        ] {
            assert_eq!(human_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text} reads back");
        }
        for bad in ["", "s", "-1s", "1.2.3s", "5 parsecs", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
