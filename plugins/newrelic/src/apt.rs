//! The agent's APT source and its signing key: the `--apt-source` line,
//! made to name the key's keyring with `signed-by=`, and the
//! `--apt-key-file` key, dearmored into the binary keyring apt reads from
//! /etc/apt/keyrings/newrelic.gpg.
//!
//! Dearmoring is a base64 decode and a CRC-24 check (RFC 4880 §6), done
//! here rather than with a crate so the plugin workspace's lock file, which
//! every plugin shares, does not change for twenty lines.

/// Where the key goes; the only `signed-by=` an `--apt-source` line may
/// name when a key is given.
pub const KEYRING: &str = "/etc/apt/keyrings/newrelic.gpg";

/// The source line to write. With a key, the line must let apt check the
/// repository against it: `signed-by=` is added when the line has none;
/// one naming another keyring, and `trusted=yes` (which turns the check
/// off), are refused rather than rewritten, since either says the
/// operator meant something else.
pub fn source_line(line: &str, with_key: bool) -> Result<String, String> {
    if !with_key {
        return Ok(line.to_string());
    }
    let rest = line["deb".len()..].trim_start();
    let (mut options, rest): (Vec<&str>, &str) = match rest.strip_prefix('[') {
        Some(inner) => match inner.split_once(']') {
            Some((opts, rest)) => (opts.split_whitespace().collect(), rest.trim()),
            None => return Err("--apt-source has a `[` with no `]`".into()),
        },
        None => (Vec::new(), rest.trim()),
    };
    let mut named = false;
    for o in &options {
        if let Some(v) = o.strip_prefix("signed-by") {
            if v != format!("={KEYRING}") {
                return Err(format!(
                    "--apt-source says {o}, but --apt-key-file installs the key as {KEYRING}: drop signed-by from the line (stackhost adds signed-by={KEYRING}) or name that keyring"
                ));
            }
            named = true;
        }
        if o.starts_with("trusted=") {
            return Err(format!(
                "--apt-source says {o}, which stops apt from checking the repository against the --apt-key-file key: drop it"
            ));
        }
    }
    let signed_by = format!("signed-by={KEYRING}");
    if !named {
        options.push(&signed_by);
    }
    Ok(format!("deb [{}] {rest}", options.join(" ")))
}

const ARMOR_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const ARMOR_END: &str = "-----END PGP PUBLIC KEY BLOCK-----";

/// The binary OpenPGP public key in an ASCII-armored key block.
pub fn dearmor(text: &str) -> Result<Vec<u8>, String> {
    let not_armored = || {
        format!(
            "--apt-key-file is not an ASCII-armored OpenPGP public key (a `{ARMOR_BEGIN}` block, as `gpg --armor --export` writes it)"
        )
    };
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != ARMOR_BEGIN);
    lines.next().ok_or_else(not_armored)?;
    let mut body = String::new();
    let mut checksum = None;
    let mut ended = false;
    for line in lines {
        if line == ARMOR_END {
            ended = true;
            break;
        } else if line.is_empty() || (body.is_empty() && line.contains(": ")) {
            // The blank line after the armor headers, and the headers.
        } else if let Some(sum) = line.strip_prefix('=') {
            checksum = Some(sum.to_string());
        } else {
            body.push_str(line);
        }
    }
    if !ended {
        return Err(format!("--apt-key-file has no `{ARMOR_END}` line"));
    }
    let key = base64(&body).ok_or("--apt-key-file: the key block is not base64")?;
    if let Some(sum) = checksum {
        let sum = base64(&sum).filter(|s| s.len() == 3);
        let crc = crc24(&key);
        if sum.as_deref() != Some(&crc.to_be_bytes()[1..]) {
            return Err(
                "--apt-key-file: the key block's checksum does not match (a damaged copy?)".into(),
            );
        }
    }
    // The first packet must be a public key (tag 6), in the new or the old
    // packet format.
    let tag = match key.first() {
        Some(b) if b & 0xc0 == 0xc0 => b & 0x3f,
        Some(b) if b & 0x80 != 0 => (b >> 2) & 0x0f,
        _ => 0,
    };
    if tag != 6 {
        return Err(
            "--apt-key-file holds no OpenPGP public key (export it with `gpg --armor --export KEYID`)"
                .into(),
        );
    }
    Ok(key)
}

fn base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// RFC 4880 §6.1.
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xB704CE;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x1000000 != 0 {
                crc ^= 0x1864CFB;
            }
        }
    }
    crc & 0xFFFFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_adds_signed_by_and_refuses_another_keyring_or_trusted() {
        let url = "https://download.newrelic.com/infrastructure_agent/linux/apt bookworm main";
        assert_eq!(
            source_line(&format!("deb {url}"), true).unwrap(),
            format!("deb [signed-by={KEYRING}] {url}")
        );
        assert_eq!(
            source_line(&format!("deb [arch=amd64] {url}"), true).unwrap(),
            format!("deb [arch=amd64 signed-by={KEYRING}] {url}")
        );
        let named = format!("deb [signed-by={KEYRING}] {url}");
        assert_eq!(source_line(&named, true).unwrap(), named);
        assert_eq!(
            source_line(
                &format!("deb [signed-by=/usr/share/keyrings/x.gpg] {url}"),
                true
            )
            .unwrap_err(),
            format!(
                "--apt-source says signed-by=/usr/share/keyrings/x.gpg, but --apt-key-file installs the key as {KEYRING}: drop signed-by from the line (stackhost adds signed-by={KEYRING}) or name that keyring"
            )
        );
        assert!(
            source_line(&format!("deb [trusted=yes] {url}"), true)
                .unwrap_err()
                .starts_with("--apt-source says trusted=yes, which stops apt")
        );
        // Without a key the line is the operator's, as given.
        let trusted = format!("deb [trusted=yes] {url}");
        assert_eq!(source_line(&trusted, false).unwrap(), trusted);
    }

    #[test]
    fn dearmor_decodes_checks_the_crc_and_wants_a_public_key() {
        // A public-key packet header (old format, tag 6) and some bytes.
        let key = [0x99u8, 0x00, 0x03, 0x04, 0x61, 0x62, 0x63];
        let b64 = |d: &[u8]| {
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut s = String::new();
            for chunk in d.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
                for i in 0..=chunk.len() {
                    s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
                for _ in chunk.len()..3 {
                    s.push('=');
                }
            }
            s
        };
        let sum = b64(&crc24(&key).to_be_bytes()[1..]);
        let armored = |body: &str, sum: &str| {
            format!("{ARMOR_BEGIN}\nComment: test\n\n{body}\n={sum}\n{ARMOR_END}\n")
        };
        assert_eq!(dearmor(&armored(&b64(&key), &sum)).unwrap(), key);
        assert_eq!(
            dearmor(&armored(&b64(&key), "AAAA")).unwrap_err(),
            "--apt-key-file: the key block's checksum does not match (a damaged copy?)"
        );
        let secret = [0x95u8, 0x00, 0x01, 0x04];
        let secret_sum = b64(&crc24(&secret).to_be_bytes()[1..]);
        assert!(
            dearmor(&armored(&b64(&secret), &secret_sum))
                .unwrap_err()
                .starts_with("--apt-key-file holds no OpenPGP public key")
        );
        assert!(
            dearmor("not a key")
                .unwrap_err()
                .contains("not an ASCII-armored")
        );
        assert_eq!(crc24(b""), 0xB704CE);
    }
}
