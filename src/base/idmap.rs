//! ID map ranges: `C:H:S` means a file owned on disk by container id C appears
//! through the mount as owned by host id H (C..C+S-1 maps to H..H+S-1), the
//! same reading as containerd's `uidmap=` option.
//!
//! In kernel terms a range is one line `C H S` of the helper namespace's
//! `uid_map` (inside, outside, count): an idmapped mount made from that
//! namespace shows on-disk INSIDE as OUTSIDE.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kernel accepts at most this many lines per map (user_namespaces(7)).
pub const MAX_RANGES: usize = 340;

/// The kernel takes a map in one write(2) of less than one page: 4095
/// bytes of `uid_map` text at most (kernel/user_namespace.c, map_write).
pub const MAX_MAP_TEXT: usize = 4095;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl IdRange {
    /// One `C:H:S` token (container id, host id, size), unchecked.
    ///
    /// ```
    /// let r = idmap_overlay::IdRange::parse("0:100000:65536")?;
    /// assert_eq!((r.container, r.host, r.size), (0, 100_000, 65_536));
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(token: &str) -> Result<IdRange, String> {
        parse_range(token)
    }

    /// A comma-separated map (`0:100000:1,1:200001:65535`), checked as the
    /// kernel would check it ([`IdRange::check_list`]).
    ///
    /// ```
    /// use idmap_overlay::IdRange;
    /// let map = IdRange::parse_list("0:5000:1,1:200001:65535")?;
    /// assert_eq!(IdRange::list_to_string(&map), "0:5000:1,1:200001:65535");
    /// assert!(IdRange::parse_list("0:1:2,1:5:1").is_err()); // overlapping
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse_list(text: &str) -> Result<Vec<IdRange>, String> {
        parse_map(text)
    }

    /// What the kernel would refuse in a map (empty, too many ranges,
    /// overlaps, overflow, more text than a page), said with the range
    /// named.
    ///
    /// ```
    /// use idmap_overlay::IdRange;
    /// let r = |c, h, s| IdRange { container: c, host: h, size: s };
    /// assert!(IdRange::check_list(&[r(0, 100_000, 65_536)]).is_ok());
    /// assert!(IdRange::check_list(&[]).is_err());
    /// ```
    pub fn check_list(ranges: &[IdRange]) -> Result<(), String> {
        validate(ranges)
    }

    /// `C:H:S,C:H:S`, as [`IdRange::parse_list`] reads it.
    pub fn list_to_string(ranges: &[IdRange]) -> String {
        render(ranges)
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.container, self.host, self.size)
    }
}

/// Parses one `C:H:S` token.
pub fn parse_range(token: &str) -> Result<IdRange, String> {
    let parts: Vec<&str> = token.split(':').collect();
    if parts.len() != 3 {
        return Err(format!(
            "id range {token:?} is not CONTAINER:HOST:SIZE (three numbers separated by ':')"
        ));
    }
    let number = |what: &str, s: &str| -> Result<u32, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("id range {token:?}: {what} {s:?} is not a number"));
        }
        s.parse::<u32>()
            .map_err(|_| format!("id range {token:?}: {what} {s} does not fit in 32 bits"))
    };
    Ok(IdRange {
        container: number("container id", parts[0])?,
        host: number("host id", parts[1])?,
        size: number("size", parts[2])?,
    })
}

/// Parses a comma-separated list of ranges and validates the whole map.
pub fn parse_map(text: &str) -> Result<Vec<IdRange>, String> {
    let ranges = text
        .split(',')
        .map(parse_range)
        .collect::<Result<Vec<_>, _>>()?;
    validate(&ranges)?;
    Ok(ranges)
}

/// Checks what the kernel would refuse when writing the map, so the user gets
/// a message that names the range instead of a bare EINVAL.
pub fn validate(ranges: &[IdRange]) -> Result<(), String> {
    if ranges.is_empty() {
        return Err("id map is empty".into());
    }
    if ranges.len() > MAX_RANGES {
        return Err(format!(
            "id map has {} ranges; the kernel allows at most {MAX_RANGES}",
            ranges.len()
        ));
    }
    let text = to_proc_lines(ranges).len();
    if text > MAX_MAP_TEXT {
        return Err(format!(
            "id map is {text} bytes as the kernel reads it (one \"C H S\" line per range); the kernel takes at most {MAX_MAP_TEXT}: use fewer or shorter ranges"
        ));
    }
    for r in ranges {
        if r.size == 0 {
            return Err(format!("id range {r}: size is zero"));
        }
        // The kernel rejects a range whose end wraps 32 bits; id 4294967295
        // is (uid_t)-1 and cannot be mapped either.
        let limit = u64::from(u32::MAX);
        if u64::from(r.container) + u64::from(r.size) > limit {
            return Err(format!(
                "id range {r}: container ids run past {}",
                u32::MAX - 1
            ));
        }
        if u64::from(r.host) + u64::from(r.size) > limit {
            return Err(format!("id range {r}: host ids run past {}", u32::MAX - 1));
        }
    }
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            if overlaps(a.container, a.size, b.container, b.size) {
                return Err(format!(
                    "id ranges {a} and {b} overlap on the container side"
                ));
            }
            if overlaps(a.host, a.size, b.host, b.size) {
                return Err(format!("id ranges {a} and {b} overlap on the host side"));
            }
        }
    }
    Ok(())
}

fn overlaps(a: u32, a_len: u32, b: u32, b_len: u32) -> bool {
    let (a, a_end) = (u64::from(a), u64::from(a) + u64::from(a_len));
    let (b, b_end) = (u64::from(b), u64::from(b) + u64::from(b_len));
    a < b_end && b < a_end
}

/// The first range that shows an on-disk id other than 0 as host id 0
/// (root): through an overlay that allows setuid, a setuid file owned on
/// disk by that id would run as host root. An identity map (0 to 0) is
/// fine: on-disk root stays root.
pub fn maps_to_host_root(ranges: &[IdRange]) -> Option<IdRange> {
    ranges
        .iter()
        .copied()
        .find(|r| r.host == 0 && r.container != 0)
}

/// The host id the map shows on-disk id `container` as, if it maps it.
pub fn host_of(ranges: &[IdRange], container: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let offset = container.checked_sub(r.container)?;
        (offset < r.size).then(|| r.host + offset)
    })
}

/// Does some range of the map show an on-disk id as `host`?
pub fn shows_as(ranges: &[IdRange], host: u32) -> bool {
    ranges.iter().any(|r| {
        host.checked_sub(r.host)
            .is_some_and(|offset| offset < r.size)
    })
}

/// Does the map take on-disk id `container` (is it in some range's
/// container side)?
pub fn maps_container_id(ranges: &[IdRange], container: u32) -> bool {
    host_of(ranges, container).is_some()
}

/// Renders the map as the lines written to `/proc/PID/uid_map`.
pub fn to_proc_lines(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
        .collect()
}

/// Parses `/proc/PID/uid_map` content (whitespace-separated triples).
pub fn from_proc_lines(text: &str) -> Result<Vec<IdRange>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let n: Vec<&str> = line.split_whitespace().collect();
            if n.len() != 3 {
                return Err(format!("malformed map line {line:?}"));
            }
            parse_range(&n.join(":"))
        })
        .collect()
}

/// `C:H:S,C:H:S` for messages and tables.
pub fn render(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(container: u32, host: u32, size: u32) -> IdRange {
        IdRange {
            container,
            host,
            size,
        }
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(parse_map("0:100000:65536"), Ok(vec![r(0, 100000, 65536)]));
        assert_eq!(
            parse_map("0:1000:1,1:100000:65535"),
            Ok(vec![r(0, 1000, 1), r(1, 100000, 65535)])
        );
        assert_eq!(parse_map("4294967294:0:1"), Ok(vec![r(4294967294, 0, 1)]));
    }

    #[test]
    fn rejects_bad_maps() {
        let cases = [
            ("", "not CONTAINER:HOST:SIZE"),
            ("0:100000", "not CONTAINER:HOST:SIZE"),
            ("0:100000:1:2", "not CONTAINER:HOST:SIZE"),
            ("a:1:1", "is not a number"),
            ("-1:1:1", "is not a number"),
            ("0:+1:1", "is not a number"),
            (" 0:1:1", "is not a number"),
            ("0:1:", "is not a number"),
            ("0:100000:0", "size is zero"),
            ("0:4294967296:1", "does not fit in 32 bits"),
            ("0:4294967295:1", "host ids run past"),
            ("4294967295:0:1", "container ids run past"),
            ("1:0:4294967295", "container ids run past"),
            ("0:100:10,5:1000:10", "overlap on the container side"),
            ("0:100:10,50:105:10", "overlap on the host side"),
            ("0:100:10,0:100:10", "overlap"),
            ("0:1:1,,2:2:1", "not CONTAINER:HOST:SIZE"),
        ];
        for (input, want) in cases {
            let err = parse_map(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn limits_range_count() {
        let ok: Vec<String> = (0..340).map(|i| format!("{i}:{}:1", 1000 + i)).collect();
        assert_eq!(parse_map(&ok.join(",")).unwrap().len(), 340);
        let too_many: Vec<String> = (0..341).map(|i| format!("{i}:{}:1", 1000 + i)).collect();
        let err = parse_map(&too_many.join(",")).unwrap_err();
        assert!(err.contains("at most 340"), "{err}");
    }

    /// 170 lines of 24 bytes, then one that brings the text to `total`.
    fn map_of_text_length(total: usize) -> Vec<IdRange> {
        let mut map: Vec<IdRange> = (0..170)
            .map(|i| r(1_000_000_000 + i, 2_000_000_000 + i, 1))
            .collect();
        let host = if total == 4095 { 5000 } else { 50000 };
        map.push(r(4_000_000, host, 1));
        assert_eq!(to_proc_lines(&map).len(), total);
        map
    }

    #[test]
    fn the_map_text_must_fit_in_a_page() {
        let largest = map_of_text_length(4095);
        assert_eq!(validate(&largest), Ok(()));
        let err = validate(&map_of_text_length(4096)).unwrap_err();
        assert!(err.contains("4096 bytes"), "{err}");
        assert!(err.contains("at most 4095"), "{err}");
    }

    #[test]
    fn only_non_root_ids_shown_as_host_root_are_flagged() {
        assert_eq!(maps_to_host_root(&[r(0, 0, 65536)]), None);
        let two = [r(0, 100000, 1000), r(1000, 200000, 10)];
        assert_eq!(host_of(&two, 0), Some(100000));
        assert_eq!(host_of(&two, 999), Some(100999));
        assert_eq!(host_of(&two, 1009), Some(200009));
        assert_eq!(host_of(&two, 1010), None);
        assert!(shows_as(&two, 100000) && shows_as(&two, 200009));
        assert!(!shows_as(&two, 0) && !shows_as(&two, 101000));
        assert!(maps_container_id(&two, 5) && !maps_container_id(&two, 5000));
        assert_eq!(maps_to_host_root(&[r(0, 100000, 65536)]), None);
        assert_eq!(
            maps_to_host_root(&[r(0, 100000, 1000), r(1000, 0, 1)]),
            Some(r(1000, 0, 1))
        );
    }

    #[test]
    fn adjacent_ranges_do_not_overlap() {
        assert!(parse_map("0:100:10,10:110:10").is_ok());
    }

    #[test]
    fn proc_lines_round_trip() {
        let map = vec![r(0, 100000, 1), r(1, 200000, 65535)];
        assert_eq!(to_proc_lines(&map), "0 100000 1\n1 200000 65535\n");
        assert_eq!(
            from_proc_lines("         0     100000          1\n         1     200000      65535\n"),
            Ok(map)
        );
    }
}
