//! `stackhost:host/types`: only type definitions, linked for every plugin.

use crate::caps::bindings::stackhost::host::types;
use crate::caps::ctx::CapView;
use crate::caps::ctx::CapsView;
use crate::caps::registry::Capability;
use semver::Version;
use wasmtime::component::{HasData, Linker};

/// Marker for the `types` interface.
pub struct Types;

impl HasData for Types {
    type Data<'a> = CapView<'a>;
}

impl types::Host for CapView<'_> {}

impl Capability for Types {
    const NAME: &'static str = "types";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = true;

    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        types::add_to_linker::<T, Types>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}
