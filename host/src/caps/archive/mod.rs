//! `stackhost:host/archive`: artifacts on the operator's host, filled by
//! streaming from nodes (see [`crate::artifact`]). Host paths must lie
//! within the archive grant; node paths within the fs grant (read to
//! pack, write to unpack). Under `--dry-run` nothing is written: creating,
//! adding and unpacking are recorded.

mod host;

use crate::artifact;
use crate::runtime::{CallCtx, PluginState};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasData, Linker, ResourceTable};

/// The view the archive and postgres Host impls work on: the call
/// context and the store's resource table.
pub struct ResView<'a> {
    pub call: &'a CallCtx,
    pub table: &'a mut ResourceTable,
}

/// Marker for the `archive` interface.
pub struct Archive;

impl HasData for Archive {
    type Data<'a> = ResView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    crate::caps::bindings::stackhost::host::archive::add_to_linker::<PluginState, Archive>(
        linker,
        |s| s.res_view(),
    )
    .map_err(anyhow::Error::from)
}

/// The host side of an `archive.writer`.
pub struct ArtifactWriter {
    pub(crate) path: PathBuf,
    /// None under `--dry-run`: calls are recorded, nothing is written.
    pub(crate) inner: Option<Arc<Mutex<Option<artifact::Writer>>>>,
}

/// The host side of an `archive.reader`.
pub struct ArtifactReader {
    pub(crate) inner: Arc<Mutex<artifact::Reader>>,
}

pub(crate) use host::{art_err, run_blocking};
