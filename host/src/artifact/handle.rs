//! The handles a plugin holds on artifacts (the `archive.writer` and
//! `archive.reader` resources of the WIT): what the host keeps behind
//! each. The WIT bindings name these types; they name no bindings.

use super::{Reader, Writer};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The host side of an `archive.writer`.
pub struct ArtifactWriter {
    pub path: PathBuf,
    /// None under `--dry-run`: calls are recorded, nothing is written.
    pub inner: Option<Arc<Mutex<Option<Writer>>>>,
}

/// The host side of an `archive.reader`.
pub struct ArtifactReader {
    pub inner: Arc<Mutex<Reader>>,
}
