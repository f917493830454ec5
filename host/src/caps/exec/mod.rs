//! `stackhost:host/exec`: run granted programs on nodes.

mod host;
mod scope;

pub use scope::{ALWAYS_ALLOWED_ENV, env_never_allowed, is_env_name, root_equivalent};

use super::CapView;
use crate::caps::bindings::stackhost::host::exec;
use crate::runtime::PluginState;
use wasmtime::component::{HasData, Linker};

/// Marker for the `exec` interface.
pub struct Exec;

impl HasData for Exec {
    type Data<'a> = CapView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    exec::add_to_linker::<PluginState, Exec>(linker, |s| CapView { call: &s.call })
        .map_err(anyhow::Error::from)
}
