//! Artifacts on the operator's host: single files (tar, zstd or gzip)
//! holding items packed from nodes, with a sha256 per item. The bytes
//! stream through the host and never through the plugin; the plugin names
//! what goes where and gets the items back.

use crate::bindings::stackhost::host::archive as wit;
use crate::{Node, Result};

pub use wit::{Compression, Item, Listed, Mismatch};

/// An artifact being written; nothing appears under its name until
/// [`finish`](ArtifactWriter::finish), and dropping it unfinished leaves
/// nothing behind.
pub struct ArtifactWriter(pub(crate) wit::Writer);

impl ArtifactWriter {
    /// Pack the file or directory tree `path` of `node` under `name`.
    pub fn add_path(&self, node: &Node, path: &str, name: &str) -> Result<Vec<Item>> {
        self.0.add_path(node.name(), path, name).map_err(Into::into)
    }

    /// Add a small item given in memory.
    pub fn add_bytes(&self, name: &str, data: impl AsRef<[u8]>) -> Result<Item> {
        self.0.add_bytes(name, data.as_ref()).map_err(Into::into)
    }

    /// Write the manifest, fsync and rename into place.
    pub fn finish(self) -> Result<Vec<Item>> {
        wit::Writer::finish(self.0).map_err(Into::into)
    }
}

/// An existing artifact.
pub struct ArtifactReader(pub(crate) wit::Reader);

impl ArtifactReader {
    /// The items its manifest records.
    pub fn items(&self) -> Result<Vec<Item>> {
        self.0.items().map_err(Into::into)
    }

    /// One small item's bytes (at most `max_bytes`).
    pub fn read(&self, name: &str, max_bytes: u64) -> Result<Vec<u8>> {
        self.0.read(name, max_bytes).map_err(Into::into)
    }

    /// Re-hash every item; empty when all match.
    pub fn verify(&self) -> Result<Vec<Mismatch>> {
        self.0.verify().map_err(Into::into)
    }

    /// Unpack the items under `prefix` onto `node` under `path`; returns
    /// the bytes written.
    pub fn unpack(&self, prefix: &str, node: &Node, path: &str) -> Result<u64> {
        self.0.unpack(prefix, node.name(), path).map_err(Into::into)
    }

    /// Write item `name` to the plain file `path` on the operator's host
    /// (mode 0600, checked against the manifest, never over an existing
    /// file); the number of bytes written. Since WIT 0.1.1.
    pub fn extract(&self, name: &str, path: &str) -> Result<u64> {
        self.0.extract(name, path).map_err(Into::into)
    }
}

/// Start an artifact at `path` on the operator's host.
pub fn create(path: &str, compression: Compression) -> Result<ArtifactWriter> {
    wit::create(path, compression)
        .map(ArtifactWriter)
        .map_err(Into::into)
}

/// Open the artifact at `path` on the operator's host.
pub fn open(path: &str) -> Result<ArtifactReader> {
    wit::open(path).map(ArtifactReader).map_err(Into::into)
}

/// Finished artifacts in `dir`, newest first.
pub fn list(dir: &str) -> Result<Vec<Listed>> {
    wit::list(dir).map_err(Into::into)
}

/// Delete the artifact at `path`.
pub fn remove(path: &str) -> Result<()> {
    wit::remove(path).map_err(Into::into)
}
