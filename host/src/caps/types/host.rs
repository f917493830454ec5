//! The `types` Host impl and its linker.

use super::Types;
use crate::caps::bindings::stackhost::host::types;
use crate::caps::ctx::CapView;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use wasmtime::component::{HasData, Linker};

impl HasData for Types {
    type Data<'a> = CapView<'a>;
}

impl Link for Types {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        types::add_to_linker::<T, Types>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}

impl types::Host for CapView<'_> {}
