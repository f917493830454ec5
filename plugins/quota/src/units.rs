//! Sizes as operators write them (`200M`, `1G`, `204800K`) and as the
//! guide's `quota -s` shows them.

/// A limit from the command line: `Some(bytes)`, or `None` for `none`
/// (no limit). K, M, G and T are powers of 1024, as `setquota` and
/// `btrfs qgroup limit` read them; a trailing `B` or `iB` is allowed.
pub fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let unit = &t[digits.len()..];
    let bad =
        || format!("--limit takes a size such as 200M, 1G or 204800K (or `none`), not `{text}`");
    if digits.is_empty() {
        return Err(bad());
    }
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(unit);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!(
            "--limit {text} would forbid every write; to lift a limit, say `--limit none`"
        ));
    }
    n.checked_mul(1u64 << shift)
        .map(Some)
        .ok_or_else(|| format!("--limit {text} is too large"))
}

/// `quota -s` style: whole K, M, G or T when exact, else one decimal.
pub fn human(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, unit) in UNITS {
        let size = 1u64 << shift;
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{}{unit}", bytes / size)
            } else {
                format!("{:.1}{unit}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes}B")
}

/// A limit for people: `none` or [`human`].
pub fn human_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "none".to_string(), human)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_sizes_parse() {
        assert_eq!(parse_limit("200M"), Ok(Some(200 << 20)));
        assert_eq!(parse_limit("204800K"), Ok(Some(204800 << 10)));
        assert_eq!(parse_limit("1G"), Ok(Some(1 << 30)));
        assert_eq!(parse_limit("1GiB"), Ok(Some(1 << 30)));
        assert_eq!(parse_limit("512k"), Ok(Some(512 << 10)));
        assert_eq!(parse_limit("4096"), Ok(Some(4096)));
        assert_eq!(parse_limit("none"), Ok(None));
    }

    #[test]
    fn malformed_sizes_are_refused_with_the_text() {
        for bad in ["", "M", "20X", "1.5G", "-1M", "200 M", "0x10", "2MM"] {
            let e = parse_limit(bad).unwrap_err();
            assert!(e.contains(&format!("not `{bad}`")), "{bad}: {e}");
        }
        assert!(parse_limit("0M").unwrap_err().contains("--limit none"));
        assert!(
            parse_limit("99999999999999999999T")
                .unwrap_err()
                .contains("not")
        );
        assert!(parse_limit("16777216T").unwrap_err().contains("too large"));
    }

    #[test]
    fn sizes_show_like_quota_s() {
        assert_eq!(human(200 << 20), "200M");
        assert_eq!(human(1008 << 10), "1008K");
        assert_eq!(human(3 << 29), "1.5G");
        assert_eq!(human(16384), "16K");
        assert_eq!(human(100), "100B");
        assert_eq!(human_limit(None), "none");
    }
}
