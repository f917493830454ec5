//! The artifact format: a tar stream (zstd, gzip or none) whose last
//! member, `stackhost-manifest.json`, records every item's name, size and
//! sha256; item names; and the manifest as it is written and read.

use super::ArtifactError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::Path;

/// The manifest's member name; no item may use it.
pub const MANIFEST: &str = "stackhost-manifest.json";
/// The manifest's format tag.
pub(super) const FORMAT: &str = "stackhost-archive/1";

/// How an artifact is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One item, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// An item whose bytes do not match the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub name: String,
    pub expected: String,
    pub actual: String,
}

/// The manifest as it is read back (its other fields are for people).
#[derive(Debug, Deserialize)]
pub(super) struct Manifest {
    pub(super) format: String,
    pub(super) items: Vec<Item>,
}

/// The items of the manifest `json` of the artifact at `path`; a manifest
/// of another format (a later stackhost's) is refused, not misread.
pub(super) fn parse_manifest(json: &[u8], path: &Path) -> Result<Vec<Item>, ArtifactError> {
    let m: Manifest = serde_json::from_slice(json).map_err(|e| {
        ArtifactError::Corrupt(format!(
            "the manifest of {} is unreadable: {e}",
            path.display()
        ))
    })?;
    if m.format != FORMAT {
        return Err(ArtifactError::Corrupt(format!(
            "{} is in format `{}`; this stackhost reads `{FORMAT}`",
            path.display(),
            m.format
        )));
    }
    Ok(m.items)
}

/// An item as the writer keeps it until the manifest is written: the
/// digest as its 32 bytes, its hex made only when the item is handed out
/// or written (an export of many small files holds one per file).
pub(super) struct Entry {
    pub(super) name: Box<str>,
    pub(super) size: u64,
    pub(super) sha256: [u8; 32],
}

impl Entry {
    pub(super) fn item(&self) -> Item {
        Item {
            name: self.name.to_string(),
            size: self.size,
            sha256: hex::encode(self.sha256),
        }
    }
}

/// [`Manifest`] as it is written, borrowing the writer's entries.
#[derive(Serialize)]
pub(super) struct ManifestOut<'a> {
    pub(super) format: &'a str,
    pub(super) created: u64,
    pub(super) finished: u64,
    pub(super) compression: Compression,
    pub(super) items: EntriesOut<'a>,
}

/// The entries serialised as [`Item`]s, each digest's hex on the stack.
pub(super) struct EntriesOut<'a>(pub(super) &'a [Entry]);

impl Serialize for EntriesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        #[derive(Serialize)]
        struct ItemOut<'a> {
            name: &'a str,
            size: u64,
            sha256: &'a str,
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            let mut hex = [0u8; 64];
            hex::encode_to_slice(e.sha256, &mut hex).expect("64 hex digits for 32 bytes");
            seq.serialize_element(&ItemOut {
                name: &e.name,
                size: e.size,
                sha256: std::str::from_utf8(&hex).expect("hex is ASCII"),
            })?;
        }
        seq.end()
    }
}

/// Counts the bytes written through it.
pub(super) struct Counting<W>(pub(super) W, pub(super) u64);

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// An item name: relative, `/`-separated, no `.`, `..` or empty parts.
pub fn check_name(name: &str) -> Result<(), ArtifactError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        || name == MANIFEST;
    if bad {
        return Err(ArtifactError::InvalidName(format!(
            "`{name}` is not a valid item name (relative, no `.`/`..`/empty parts, not `{MANIFEST}`)"
        )));
    }
    Ok(())
}

/// Counts and hashes what passes through.
pub(super) struct Hashing<R> {
    pub(super) inner: R,
    pub(super) hash: Sha256,
    pub(super) size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

impl<R> Hashing<R> {
    pub(super) fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hash: Sha256::new(),
            size: 0,
        }
    }
    pub(super) fn done(self, name: String) -> Item {
        Item {
            name,
            size: self.size,
            sha256: hex::encode(self.hash.finalize()),
        }
    }
}

/// What an unfinished artifact's name holds after `.stackhost-`, before
/// its writer's pid.
pub(super) const PARTIAL_TAG: &str = "partial-";
