//! `stackhost:host/fs`: files on nodes, within granted path scopes.

pub mod diff;
mod host;
pub use host::{READ_CAP, WRITE_CAP};
pub(crate) mod scope;

use super::CapView;
use crate::caps::bindings::stackhost::host::fs;
use crate::runtime::PluginState;
use wasmtime::component::{HasData, Linker};

/// Marker for the `fs` interface.
pub struct Fs;

impl HasData for Fs {
    type Data<'a> = CapView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    fs::add_to_linker::<PluginState, Fs>(linker, |s| CapView { call: &s.call })
        .map_err(anyhow::Error::from)
}
