//! What a recorded `fs.write` would change, for `--dry-run`: a unified diff
//! of text files under 1 MiB (a new file is all `+`), sizes and sha256 of
//! anything else.

use sha2::{Digest, Sha256};

/// The largest file (old or new) shown as a text diff.
pub const MAX_TEXT_DIFF: u64 = 1 << 20;

/// What the node holds at the path now, as far as a diff needs it.
pub enum Current {
    /// Nothing there.
    Missing,
    /// A regular file of at most [`MAX_TEXT_DIFF`] bytes, read whole.
    Small(Vec<u8>),
    /// A bigger file, or one that could not be read: its size.
    Large(u64),
    /// Not a regular file (a directory, a link): what it is.
    Other(&'static str),
}

fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.len() as u64 > MAX_TEXT_DIFF || bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The diff a write of `new` to `path` would make over `current`.
pub fn of_write(path: &str, current: &Current, new: &[u8]) -> String {
    let old: Option<&[u8]> = match current {
        Current::Missing => Some(b""),
        Current::Small(b) => Some(b),
        Current::Large(_) | Current::Other(_) => None,
    };
    if let (Some(old), Some(new_text)) = (old, text(new))
        && let Some(old_text) = text(old)
    {
        if old == new {
            return "(no change: the file already holds exactly this)".into();
        }
        let from = if matches!(current, Current::Missing) {
            "/dev/null".to_string()
        } else {
            format!("a{path}")
        };
        return similar::TextDiff::from_lines(old_text, new_text)
            .unified_diff()
            .context_radius(3)
            .header(&from, &format!("b{path}"))
            .to_string();
    }
    let before = match current {
        Current::Missing => "absent".to_string(),
        Current::Small(b) => format!("{} bytes, sha256 {}", b.len(), sha(b)),
        Current::Large(n) => format!("{n} bytes"),
        Current::Other(what) => (*what).to_string(),
    };
    format!(
        "binary or larger than {MAX_TEXT_DIFF} bytes, not shown as text: now {before}; \
         would be {} bytes, sha256 {}",
        new.len(),
        sha(new)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_edit_is_a_unified_diff() {
        let old = b"a = 1\nb = 2\nc = 3\n".to_vec();
        let d = of_write(
            "/etc/x.conf",
            &Current::Small(old),
            b"a = 1\nb = 20\nc = 3\n",
        );
        assert_eq!(
            d,
            "--- a/etc/x.conf\n+++ b/etc/x.conf\n@@ -1,3 +1,3 @@\n a = 1\n-b = 2\n+b = 20\n c = 3\n"
        );
    }

    #[test]
    fn a_new_file_is_all_added_and_the_same_content_says_so() {
        let d = of_write("/etc/new", &Current::Missing, b"x\ny\n");
        assert!(d.starts_with("--- /dev/null\n+++ b/etc/new\n"), "{d}");
        assert!(d.ends_with("+x\n+y\n"), "{d}");
        let same = of_write("/etc/same", &Current::Small(b"x\n".to_vec()), b"x\n");
        assert!(same.starts_with("(no change"), "{same}");
    }

    #[test]
    fn binary_and_large_files_show_sizes_and_hashes() {
        let d = of_write("/bin/x", &Current::Small(vec![0, 1, 2]), &[0, 1, 3]);
        assert!(d.contains("now 3 bytes, sha256 "), "{d}");
        assert!(d.contains("would be 3 bytes, sha256 "), "{d}");
        let d = of_write("/big", &Current::Large(5 << 20), b"small\n");
        assert!(d.contains("now 5242880 bytes"), "{d}");
    }
}
