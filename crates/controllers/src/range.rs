//! `Range: bytes=...` as RFC 9110 reads it.

/// At most this many ranges are honoured in one request; more and the header is ignored (RFC 9110
/// lets a server ignore a Range it finds abusive).
pub const MAX_RANGES: usize = 64;

/// What a Range header asks for, against content of a known size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No Range, or one that is not valid syntax: the whole content, 200.
    Whole,
    /// Satisfiable ranges, `start..end` (end exclusive), in request order: 206.
    Ranges(Vec<(u64, u64)>),
    /// Valid syntax but nothing inside the content: 416.
    Unsatisfiable,
}

/// Reads a Range header for content of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(header) = header else {
        return RangeRequest::Whole;
    };
    let Some((unit, specs)) = header.split_once('=') else {
        return RangeRequest::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Whole;
    }
    let mut satisfiable = Vec::new();
    let mut count = 0;
    for spec in specs.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue; // RFC 9110 allows empty list elements
        }
        count += 1;
        if count > MAX_RANGES {
            return RangeRequest::Whole;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return RangeRequest::Whole;
        };
        let (first, last) = (first.trim(), last.trim());
        let range = match (first.is_empty(), last.is_empty()) {
            // -n: the last n bytes
            (true, false) => {
                let Some(n) = digits(last) else {
                    return RangeRequest::Whole;
                };
                (n > 0 && size > 0).then(|| (size.saturating_sub(n), size))
            }
            // a- : from a to the end
            (false, true) => {
                let Some(a) = digits(first) else {
                    return RangeRequest::Whole;
                };
                (a < size).then_some((a, size))
            }
            // a-b
            (false, false) => {
                let (Some(a), Some(b)) = (digits(first), digits(last)) else {
                    return RangeRequest::Whole;
                };
                if b < a {
                    return RangeRequest::Whole;
                }
                (a < size).then(|| (a, b.saturating_add(1).min(size)))
            }
            (true, true) => return RangeRequest::Whole,
        };
        satisfiable.extend(range);
    }
    if count == 0 {
        RangeRequest::Whole
    } else if satisfiable.is_empty() {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Ranges(satisfiable)
    }
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::{Ranges, Unsatisfiable, Whole};
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let cases: &[(&str, Option<&str>, RangeRequest)] = &[
            ("no header", None, Whole),
            ("closed range", Some("bytes=0-9"), Ranges(vec![(0, 10)])),
            ("open range", Some("bytes=90-"), Ranges(vec![(90, 100)])),
            ("suffix", Some("bytes=-5"), Ranges(vec![(95, 100)])),
            (
                "suffix longer than the content",
                Some("bytes=-500"),
                Ranges(vec![(0, 100)]),
            ),
            (
                "end past the content is cut",
                Some("bytes=95-200"),
                Ranges(vec![(95, 100)]),
            ),
            (
                "several",
                Some("bytes=0-0, 10-19,-1"),
                Ranges(vec![(0, 1), (10, 20), (99, 100)]),
            ),
            ("unit is case-insensitive", Some("Bytes=1-1"), Ranges(vec![(1, 2)])),
            ("start at the end", Some("bytes=100-"), Unsatisfiable),
            ("start past the end", Some("bytes=200-300"), Unsatisfiable),
            ("zero suffix", Some("bytes=-0"), Unsatisfiable),
            (
                "unsatisfiable parts are dropped",
                Some("bytes=200-300,0-1"),
                Ranges(vec![(0, 2)]),
            ),
            ("other unit", Some("items=0-1"), Whole),
            ("no dash", Some("bytes=5"), Whole),
            ("reversed", Some("bytes=9-1"), Whole),
            ("not digits", Some("bytes=a-b"), Whole),
            ("signs", Some("bytes=+1-2"), Whole),
            ("no equals", Some("bytes 0-1"), Whole),
            ("empty set", Some("bytes="), Whole),
            ("lone dash", Some("bytes=-"), Whole),
        ];
        for (what, header, expected) in cases {
            assert_eq!(&parse(*header, 100), expected, "{what}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(parse(Some(&many), 100), Whole, "too many ranges are ignored");
        assert_eq!(
            parse(Some("bytes=-1"), 0),
            Unsatisfiable,
            "empty content has no last byte"
        );
    }
}
