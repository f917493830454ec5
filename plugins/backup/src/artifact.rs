//! The artifact an export writes: its name, its compression and the
//! `backup.json` that says what it holds.

use serde::{Deserialize, Serialize};
use stackhost_sdk::archive::{self, Compression};
use stackhost_sdk::clock::{self, utc_stamp};
use stackhost_sdk::prelude::*;

pub(crate) const SUFFIXES: &[&str] = &[".tar.zst", ".tar.gz", ".tgz", ".tar"];
pub(crate) const DEFAULT_DEST: &str = "/var/backups/stackato/";

/// True when `dest` names the artifact file itself (by its suffix) rather
/// than a directory to put a dated one in.
pub(crate) fn names_file(dest: &str) -> bool {
    SUFFIXES.iter().any(|s| dest.ends_with(s))
}

pub(crate) fn export_dest(inv: &Invocation) -> &str {
    inv.value("dest").unwrap_or(DEFAULT_DEST)
}

/// The artifact path for `dest`: a file name as given, or a dated name in
/// a directory.
pub(crate) fn artifact_path(dest: &str, base: &str, gzip: bool) -> String {
    if names_file(dest) {
        return dest.to_string();
    }
    let ext = if gzip { "tar.gz" } else { "tar.zst" };
    format!(
        "{}/{base}-{}.{ext}",
        dest.trim_end_matches('/'),
        utc_stamp(clock::now())
    )
}

pub(crate) fn compression_of(path: &str) -> Compression {
    if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
        Compression::Gzip
    } else if path.ends_with(".tar") {
        Compression::None
    } else {
        Compression::Zstd
    }
}

/// What an export holds, as recorded in `backup.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) format: String,
    pub(crate) product_version: Option<String>,
    pub(crate) created: u64,
    /// `cluster`, or `node NAME` for --only-this-node.
    pub(crate) scope: String,
    pub(crate) roles: Vec<String>,
    pub(crate) topology: Vec<TopologyNode>,
    pub(crate) contents: Vec<Content>,
    /// Service data found on the nodes and not exported (`--allow-partial`):
    /// an import or a verify says so. Absent in older artifacts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) omitted: Vec<Omitted>,
}

/// Data an export saw and did not take, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Omitted {
    pub(crate) node: String,
    /// The data service (`mysql`, `redis`, ...).
    pub(crate) service: String,
    pub(crate) path: String,
    pub(crate) why: String,
}

impl std::fmt::Display for Omitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on node {} ({}: {})",
            self.service, self.node, self.path, self.why
        )
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TopologyNode {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) roles: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Content {
    /// `database`, `droplets`, `services`, `settings`.
    pub(crate) kind: String,
    /// Item name (or prefix) in the artifact.
    pub(crate) item: String,
    /// The role it came from.
    pub(crate) role: String,
    pub(crate) node: String,
    /// Database name, or path on the node.
    pub(crate) source: String,
}

/// The artifacts in `dir`, newest first; `None` when the directory does
/// not exist (yet), which holds no exports rather than being a failure.
pub(crate) fn artifacts_in(dir: &str) -> Result<Option<Vec<archive::Listed>>> {
    match archive::list(dir) {
        Ok(listed) => Ok(Some(listed)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn no_exports_yet(dir: &str) -> Outcome {
    Outcome::ok(format!("no exports in {dir} (it does not exist yet)"))
}

/// Whether `path` is a stackhost artifact whose manifest reads (it is at
/// the end, so this reads the whole stream once and catches a file cut
/// short): the only kind prune counts or deletes.
pub(crate) fn readable_artifact(path: &str) -> bool {
    archive::open(path).and_then(|a| a.items()).is_ok()
}

/// The databases an export holds, in export order.
pub(crate) fn databases(meta: &Meta) -> Vec<&str> {
    meta.contents
        .iter()
        .filter(|c| c.kind == "database")
        .map(|c| c.source.as_str())
        .collect()
}

pub(crate) fn exports(n: usize) -> String {
    if n == 1 {
        "1 export".into()
    } else {
        format!("{n} exports")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_compressions() {
        assert_eq!(artifact_path("/x/y.tgz", "e", false), "/x/y.tgz");
        assert!(artifact_path("/x/", "e", true).starts_with("/x/e-"));
        assert!(artifact_path("/x", "e", false).ends_with(".tar.zst"));
        assert_eq!(compression_of("/a.tgz"), Compression::Gzip);
        assert!(names_file("/x/y.tar") && !names_file("/x/y.tar/"));
    }
}
