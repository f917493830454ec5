//! `stackhost:host/types`: only type definitions, linked for every plugin.

use super::CapView;
use crate::caps::bindings::stackhost::host::types;
use crate::runtime::PluginState;
use wasmtime::component::{HasData, Linker};

/// Marker for the `types` interface.
pub struct Types;

impl HasData for Types {
    type Data<'a> = CapView<'a>;
}

impl types::Host for CapView<'_> {}

pub fn add_to_linker(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    types::add_to_linker::<PluginState, Types>(linker, |s| CapView { call: &s.call })
        .map_err(anyhow::Error::from)
}
