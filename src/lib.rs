//! idmap-overlay: overlayfs mounts whose lower layers are seen through an
//! idmapped mount, with crash-safe state under /run. See ARCHITECTURE in the
//! README for the map of these modules.

/// `println!` that does not panic when stdout is closed.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that does not panic when stdout is closed.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cmd::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that does not panic when stderr is closed.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cmd::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod cmd;
pub mod exit;
pub mod features;
pub mod findings;
pub mod gc;
pub mod idmap;
pub mod inspect;
pub mod mount;
pub mod mount_helper;
pub mod mountinfo;
pub mod overlay;
pub mod state;
pub mod strategy;
pub mod sys;
pub mod testpoint;
pub mod umount;
pub mod unmount;
pub mod userns;

use std::time::Duration;

/// An io error as a short phrase: "no such file or directory".
pub fn describe_io(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err.to_string(),
    }
}

/// Parses `2.5s`, `300ms`, `1m`, `2h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 2.5s, 300ms, 1m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
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
        for bad in ["", "s", "-1s", "1.2.3s", "5 parsecs", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
