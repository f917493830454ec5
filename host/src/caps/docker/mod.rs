//! `stackhost:host/docker`: each node's own Docker engine through bollard
//! (see [`crate::cluster::docker`] for how a request reaches it). Calls
//! are checked against the grant's operations, roles and image-name
//! patterns; under `--dry-run` listing and inspecting run for real, and
//! build, tag, remove, push and pull are recorded. `restart` is in the WIT
//! since 0.1.0 but never granted (the guide forbids `docker restart` for
//! apps).

mod build;
mod host;
mod registry;
mod scope;

pub use scope::{ImagePattern, OPERATIONS, normalize, validate_request};

use super::CapView;
use crate::caps::bindings::stackhost::host::docker;
use crate::runtime::PluginState;
use wasmtime::component::{HasData, Linker};

/// Marker for the `docker` interface.
pub struct Docker;

impl HasData for Docker {
    type Data<'a> = CapView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    docker::add_to_linker::<PluginState, Docker>(linker, |s| CapView { call: &s.call })
        .map_err(anyhow::Error::from)
}
