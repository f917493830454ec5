//! Query results as the text PostgreSQL itself prints. The extended query
//! protocol (one statement, refused otherwise by the server) returns
//! values in binary; `postgres.query` promises text, so the common types
//! are turned into PostgreSQL's own output format here (ISO dates, UTC
//! for `timestamptz`, the `postgres` interval style, shortest floats).
//! Other types are refused with a hint to cast the column to text in the
//! query.

use std::fmt::Write as _;
use tokio_postgres::types::{FromSql, Kind, Type};

/// A column's raw value, whatever its type (None for SQL NULL).
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Why a value has no text here.
#[derive(Debug, PartialEq)]
pub enum TextError {
    /// A type this module does not print (named).
    Unsupported(String),
    /// Bytes that do not match their type's binary format.
    Malformed(String),
}

/// Reads big-endian fields of a binary value.
struct Fields<'a> {
    raw: &'a [u8],
    at: usize,
    ty: &'a str,
}

impl<'a> Fields<'a> {
    fn new(ty: &'a Type, raw: &'a [u8]) -> Fields<'a> {
        Fields {
            raw,
            at: 0,
            ty: ty.name(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TextError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.raw.len());
        let Some(end) = end else {
            return Err(TextError::Malformed(format!(
                "a {} value is shorter than its format",
                self.ty
            )));
        };
        let bytes = &self.raw[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TextError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, TextError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn u16(&mut self) -> Result<u16, TextError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, TextError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, TextError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, TextError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, TextError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn u8(&mut self) -> Result<u8, TextError> {
        Ok(self.take(1)?[0])
    }

    /// The value must end here.
    fn done(&self) -> Result<(), TextError> {
        if self.at == self.raw.len() {
            Ok(())
        } else {
            Err(TextError::Malformed(format!(
                "a {} value is longer than its format",
                self.ty
            )))
        }
    }
}

/// The text PostgreSQL prints for the binary value `raw` of type `ty`.
// Long because it is one arm per PostgreSQL type.
pub fn to_text(ty: &Type, raw: &[u8]) -> Result<String, TextError> {
    match ty.kind() {
        Kind::Domain(base) => return to_text(base, raw),
        Kind::Enum(_) => return Ok(utf8(raw)),
        Kind::Array(elem) => return array(ty, elem, raw),
        _ => {}
    }
    let mut f = Fields::new(ty, raw);
    let text = match ty.oid() {
        16 => (if f.u8()? != 0 { "t" } else { "f" }).to_string(), // bool
        17 => {
            // bytea, as bytea_output = hex prints it
            let mut s = String::with_capacity(2 + raw.len() * 2);
            s.push_str("\\x");
            for b in f.take(raw.len())? {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        // "char": one byte
        18 => {
            let b = f.u8()?;
            if b.is_ascii() {
                (b as char).to_string()
            } else {
                format!("\\{b:03o}")
            }
        }
        // name, text, json, xml, unknown, bpchar, varchar: the text itself
        19 | 25 | 114 | 142 | 705 | 1042 | 1043 => utf8(f.take(raw.len())?),
        20 => f.i64()?.to_string(),           // int8
        21 => f.i16()?.to_string(),           // int2
        23 => f.i32()?.to_string(),           // int4
        26 | 28 | 29 => f.u32()?.to_string(), // oid, xid, cid
        5069 => f.u64()?.to_string(),         // xid8
        700 => float(f64::from(f32::from_be_bytes(f.array()?)), true),
        701 => float(f64::from_bits(f.u64()?), false),
        1700 => numeric(&mut f)?,
        3802 => {
            // jsonb: a version byte, then the text
            if f.u8()? != 1 {
                return Err(TextError::Malformed("unknown jsonb version".into()));
            }
            utf8(f.take(raw.len() - 1)?)
        }
        2950 => {
            let b = f.take(16)?;
            let hex: String = b.iter().map(|b| format!("{b:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        }
        1082 => date(f.i32()?),
        1083 => time(f.i64()?),
        1266 => {
            let t = time(f.i64()?);
            format!("{t}{}", zone(-f.i32()?))
        }
        1114 => timestamp(f.i64()?, ""),
        // timestamptz: the session runs with TimeZone = UTC
        1184 => timestamp(f.i64()?, "+00"),
        1186 => {
            let micros = f.i64()?;
            let days = f.i32()?;
            let months = f.i32()?;
            interval(months, days, micros)
        }
        869 | 650 => inet(&mut f, ty.oid() == 650)?,
        829 | 774 => {
            let n = if ty.oid() == 829 { 6 } else { 8 };
            let b = f.take(n)?;
            b.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }
        _ => return Err(TextError::Unsupported(ty.name().to_string())),
    };
    f.done()?;
    Ok(text)
}

fn utf8(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Shortest round-trip digits, in PostgreSQL's layout: fixed-point for
/// decimal exponents from -4 up to 14 (float8) or 5 (float4), otherwise
/// `1.5e+21`.
fn float(v: f64, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = if single {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let fixed_below = if single { 6 } else { 15 };
    let body = if !(-4..fixed_below).contains(&exp) {
        let rest = if digits.len() > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{}{rest}e{esign}{:02}", &digits[..1], exp.abs())
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    } else {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    };
    format!("{sign}{body}")
}

/// `numeric`: base-10000 digits with a weight and a display scale.
fn numeric(f: &mut Fields) -> Result<String, TextError> {
    let ndigits = f.i16()?;
    let weight = i32::from(f.i16()?);
    let sign = f.u16()?;
    let dscale = usize::from(f.u16()?);
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => return Err(TextError::Malformed("unknown numeric sign".into())),
    };
    let digits: Vec<i16> = (0..ndigits.max(0))
        .map(|_| f.i16())
        .collect::<Result<_, _>>()?;
    // digits[k] carries weight `weight - k`.
    let group = |k: i32| -> i16 {
        usize::try_from(k)
            .ok()
            .and_then(|k| digits.get(k).copied())
            .unwrap_or(0)
    };
    let mut s = String::new();
    if negative {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                let _ = write!(s, "{}", group(k));
            } else {
                let _ = write!(s, "{:04}", group(k));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", group(k));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// Days since 1970-01-01 as (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 2000-01-01 to 1970.
const EPOCH_2000: i64 = 10_957;
const DAY_MICROS: i64 = 86_400_000_000;

/// `YYYY-MM-DD`, and whether it is BC.
fn ymd(days_2000: i64) -> (String, bool) {
    let (y, m, d) = civil(days_2000 + EPOCH_2000);
    if y <= 0 {
        (format!("{:04}-{m:02}-{d:02}", 1 - y), true)
    } else {
        (format!("{y:04}-{m:02}-{d:02}"), false)
    }
}

fn date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => {
            let (s, bc) = ymd(i64::from(days));
            if bc { format!("{s} BC") } else { s }
        }
    }
}

/// `HH:MM:SS[.ffffff]` with trailing zeros of the fraction dropped.
fn time(micros: i64) -> String {
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let mut s = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    push_fraction(&mut s, frac);
    s
}

fn push_fraction(s: &mut String, frac: i64) {
    if frac != 0 {
        let digits = format!("{frac:06}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
}

/// A UTC offset in seconds east, as `+HH[:MM[:SS]]`.
fn zone(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.unsigned_abs();
    let mut s = format!("{sign}{:02}", a / 3600);
    if !a.is_multiple_of(3600) {
        let _ = write!(s, ":{:02}", (a / 60) % 60);
        if !a.is_multiple_of(60) {
            let _ = write!(s, ":{:02}", a % 60);
        }
    }
    s
}

fn timestamp(micros: i64, tz: &str) -> String {
    match micros {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    let (day, rest) = (micros.div_euclid(DAY_MICROS), micros.rem_euclid(DAY_MICROS));
    let (date, bc) = ymd(day);
    let bc = if bc { " BC" } else { "" };
    format!("{date} {}{tz}{bc}", time(rest))
}

/// The `postgres` IntervalStyle: `1 year 2 mons -3 days +04:05:06.5`.
fn interval(months: i32, days: i32, micros: i64) -> String {
    let mut s = String::new();
    let mut before_negative = false;
    for (value, unit) in [
        (i64::from(months / 12), "year"),
        (i64::from(months % 12), "mon"),
        (i64::from(days), "day"),
    ] {
        if value == 0 {
            continue;
        }
        let space = if s.is_empty() { "" } else { " " };
        let plus = if before_negative && value > 0 {
            "+"
        } else {
            ""
        };
        let plural = if value != 1 { "s" } else { "" };
        let _ = write!(s, "{space}{plus}{value} {unit}{plural}");
        before_negative = value < 0;
    }
    if s.is_empty() || micros != 0 {
        let a = micros.unsigned_abs();
        let sign = if micros < 0 {
            "-"
        } else if before_negative {
            "+"
        } else {
            ""
        };
        let space = if s.is_empty() { "" } else { " " };
        let secs = a / 1_000_000;
        let _ = write!(
            s,
            "{space}{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        );
        push_fraction(&mut s, (a % 1_000_000) as i64);
    }
    s
}

fn inet(f: &mut Fields, cidr: bool) -> Result<String, TextError> {
    let family = f.u8()?;
    let bits = f.u8()?;
    let _is_cidr = f.u8()?;
    let len = usize::from(f.u8()?);
    let addr = f.take(len)?;
    let (text, max) = match (family, addr.len()) {
        (2, 4) => (
            std::net::Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(),
            32,
        ),
        (3, 16) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(addr);
            (std::net::Ipv6Addr::from(b).to_string(), 128)
        }
        _ => return Err(TextError::Malformed("unknown inet family".into())),
    };
    Ok(if cidr || bits != max {
        format!("{text}/{bits}")
    } else {
        text
    })
}

/// `{1,2,NULL}`, `{{a,b},{c,d}}`, `[0:1]={x,y}`.
fn array(ty: &Type, elem: &Type, raw: &[u8]) -> Result<String, TextError> {
    let mut f = Fields::new(ty, raw);
    let ndim = f.i32()?;
    let _has_nulls = f.i32()?;
    let _elem_oid = f.u32()?;
    if ndim == 0 {
        f.done()?;
        return Ok("{}".into());
    }
    if !(1..=6).contains(&ndim) {
        return Err(TextError::Malformed("bad array dimensions".into()));
    }
    let mut dims = Vec::new();
    for _ in 0..ndim {
        let len = f.i32()?;
        let lower = f.i32()?;
        dims.push((usize::try_from(len).unwrap_or(0), lower));
    }
    let total: usize = dims.iter().map(|d| d.0).product();
    let mut values = Vec::with_capacity(total.min(1 << 16));
    for _ in 0..total {
        let len = f.i32()?;
        if len < 0 {
            values.push(None);
        } else {
            values.push(Some(to_text(elem, f.take(len as usize)?)?));
        }
    }
    f.done()?;
    let mut s = String::new();
    if dims.iter().any(|d| d.1 != 1) {
        for (len, lower) in &dims {
            let upper = i64::from(*lower) + *len as i64 - 1;
            let _ = write!(s, "[{lower}:{upper}]");
        }
        s.push('=');
    }
    let mut next = values.into_iter();
    nest(&mut s, &dims, &mut next);
    Ok(s)
}

fn nest(s: &mut String, dims: &[(usize, i32)], values: &mut impl Iterator<Item = Option<String>>) {
    s.push('{');
    for i in 0..dims[0].0 {
        if i > 0 {
            s.push(',');
        }
        if dims.len() > 1 {
            nest(s, &dims[1..], values);
        } else {
            match values.next().flatten() {
                None => s.push_str("NULL"),
                Some(v) => s.push_str(&array_element(&v)),
            }
        }
    }
    s.push('}');
}

fn array_element(v: &str) -> String {
    let quote = v.is_empty()
        || v.eq_ignore_ascii_case("NULL")
        || v.chars()
            .any(|c| "{},\"\\".contains(c) || c.is_ascii_whitespace());
    if !quote {
        return v.to_string();
    }
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(ndigits.to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(sign.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_print_like_postgres() {
        let t = |b: Vec<u8>| to_text(&Type::NUMERIC, &b).unwrap();
        // 12345.678 = [1][2345].[6780], weight 1, dscale 3
        assert_eq!(t(numeric_bytes(3, 1, 0, 3, &[1, 2345, 6780])), "12345.678");
        // -0.00012: fractional groups [0001][2000], weight -1
        assert_eq!(t(numeric_bytes(2, -1, 0x4000, 5, &[1, 2000])), "-0.00012");
        // 0.000000001 (weight -3: [1000] is the third fractional group)
        assert_eq!(t(numeric_bytes(1, -3, 0, 9, &[1000])), "0.000000001");
        // 10000000 = [1000][0000] -> ndigits may drop trailing zero groups
        assert_eq!(t(numeric_bytes(1, 1, 0, 0, &[1000])), "10000000");
        assert_eq!(t(numeric_bytes(0, 0, 0, 2, &[])), "0.00");
        assert_eq!(t(numeric_bytes(0, 0, 0xC000, 0, &[])), "NaN");
    }

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(float(1.5, false), "1.5");
        assert_eq!(float(100.0, false), "100");
        assert_eq!(float(0.0001, false), "0.0001");
        assert_eq!(float(0.00001, false), "1e-05");
        assert_eq!(float(1e15, false), "1e+15");
        assert_eq!(float(123456789012345.0, false), "123456789012345");
        assert_eq!(float(-2.5e-300, false), "-2.5e-300");
        assert_eq!(float(f64::from(0.1f32), true), "0.1");
        assert_eq!(float(1e6, true), "1e+06");
        assert_eq!(float(f64::NEG_INFINITY, false), "-Infinity");
        assert_eq!(float(-0.0, false), "-0");
    }

    #[test]
    fn dates_and_times_print_like_postgres() {
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(date(9190), "2025-02-28");
        assert_eq!(date(-730_119), "0001-01-01");
        assert_eq!(date(-730_120), "0001-12-31 BC");
        assert_eq!(time(3_723_000_500), "01:02:03.0005");
        assert_eq!(
            timestamp(86_400_000_000 + 1_000_000, "+00"),
            "2000-01-02 00:00:01+00"
        );
        assert_eq!(timestamp(-1, ""), "1999-12-31 23:59:59.999999");
        assert_eq!(zone(-(5 * 3600 + 30 * 60)), "-05:30");
        assert_eq!(zone(3600), "+01");
    }

    #[test]
    fn intervals_print_like_postgres() {
        assert_eq!(interval(0, 0, 0), "00:00:00");
        assert_eq!(
            interval(14, 3, 14_706_500_000),
            "1 year 2 mons 3 days 04:05:06.5"
        );
        assert_eq!(interval(0, -1, 7_200_000_000), "-1 days +02:00:00");
        assert_eq!(interval(0, 1, 0), "1 day");
        assert_eq!(interval(0, 0, -90_000_000), "-00:01:30");
    }

    #[test]
    fn arrays_print_like_postgres() {
        let mut raw = Vec::new();
        for v in [1i32, 0, 25] {
            raw.extend(v.to_be_bytes());
        }
        raw.extend(3i32.to_be_bytes()); // length
        raw.extend(1i32.to_be_bytes()); // lower bound
        for e in [&b"a b"[..], b"NULL"] {
            raw.extend((e.len() as i32).to_be_bytes());
            raw.extend(e);
        }
        raw.extend((-1i32).to_be_bytes());
        assert_eq!(
            to_text(&Type::TEXT_ARRAY, &raw).unwrap(),
            r#"{"a b","NULL",NULL}"#
        );
    }

    #[test]
    fn other_types_are_named() {
        assert_eq!(
            to_text(&Type::TS_VECTOR, b"x"),
            Err(TextError::Unsupported("tsvector".into()))
        );
        assert!(matches!(
            to_text(&Type::INT4, &[0, 1]),
            Err(TextError::Malformed(_))
        ));
    }
}
