//! Paths as bytes: lexical normalisation of the absolute paths plugins
//! give, and the rule for which symlinks the sandbox may create.

use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// `path` without `.` components and repeated slashes. `None` when it is
/// not absolute or has a `..` component (never resolved lexically: a
/// `..` after a symlink means something else on disk).
pub fn normalize(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `rel` joined below `base` with `..` applied lexically; `None` when it
/// climbs above `base`'s top (an empty path).
fn join_within(base: &Path, rel: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&OsStr> = base
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// Which symlinks may be created: a relative target must stay inside the
/// grant root that holds the link (counted from the link's own place,
/// which the sandbox reached without following any link); an absolute
/// target must lie in one of the write roots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkPolicy {
    /// The write roots, as the grant names them.
    #[serde(with = "bytes_list")]
    pub write_roots: Vec<PathBuf>,
}

impl LinkPolicy {
    /// May a link at `link_rel` (relative to its root) point to `target`?
    pub fn allows(&self, link_rel: &Path, target: &Path) -> bool {
        if target.as_os_str().is_empty() {
            return false;
        }
        if target.is_absolute() {
            return normalize(target)
                .is_some_and(|t| self.write_roots.iter().any(|r| t.starts_with(r)));
        }
        let parent = link_rel.parent().unwrap_or(Path::new(""));
        join_within(parent, target).is_some()
    }
}

/// Serde for `PathBuf` as raw bytes (base64 in JSON), so no path is ever
/// converted through text.
pub mod bytes {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(p.as_os_str().as_bytes()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        let text = String::deserialize(d)?;
        let raw = STANDARD.decode(text).map_err(serde::de::Error::custom)?;
        Ok(PathBuf::from(OsStr::from_bytes(&raw)))
    }
}

/// [`bytes`] for a list of paths.
pub mod bytes_list {
    use super::*;
    use serde::{Deserializer, Serializer, ser::SerializeSeq};

    #[derive(Serialize, Deserialize)]
    struct Raw(#[serde(with = "super::bytes")] PathBuf);

    pub fn serialize<S: Serializer>(v: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for p in v {
            seq.serialize_element(&Raw(p.clone()))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
        Ok(Vec::<Raw>::deserialize(d)?
            .into_iter()
            .map(|r| r.0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_parent_dirs() {
        assert_eq!(
            normalize(Path::new("//a/./b//c/")),
            Some(PathBuf::from("/a/b/c"))
        );
        assert_eq!(normalize(Path::new("/a/../b")), None);
        assert_eq!(normalize(Path::new("a/b")), None);
        // A trailing newline is part of the name, never trimmed.
        assert_eq!(
            normalize(Path::new("/a/link\n")),
            Some(PathBuf::from("/a/link\n"))
        );
    }

    #[test]
    fn link_policy() {
        let p = LinkPolicy {
            write_roots: vec![PathBuf::from("/srv/w")],
        };
        assert!(p.allows(Path::new("a/l"), Path::new("b")));
        assert!(p.allows(Path::new("a/l"), Path::new("../b")));
        assert!(!p.allows(Path::new("a/l"), Path::new("../../b")));
        assert!(!p.allows(Path::new("l"), Path::new("../w/x")));
        assert!(p.allows(Path::new("l"), Path::new("/srv/w/x")));
        assert!(!p.allows(Path::new("l"), Path::new("/srv/w/../etc")));
        assert!(!p.allows(Path::new("l"), Path::new("/etc/passwd")));
        assert!(!p.allows(Path::new("l"), Path::new("")));
    }
}
