//! Linking: each capability's `host.rs` adds its interface's host
//! functions to a plugin's linker ([`Link`]); [`link`] adds those of every
//! interface a plugin gets and those its grant holds, from the one list in
//! [`crate::caps::registry`]. A capability not granted is not linked at
//! all, so its functions cannot even be called.

use crate::caps::ctx::CapsView;
use crate::caps::interface::Interface;
use crate::caps::registry::{Capabilities, Slot};
use wasmtime::component::Linker;

/// How a capability's host functions are added to a linker.
pub trait Link: Interface {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()>;
}

macro_rules! link_list {
    (
        always: [$($always:ty),* $(,)?],
        granted: [$($field:ident => $cap:ty),* $(,)?] $(,)?
    ) => {
        /// Add to `linker` the interfaces every plugin gets and the ones
        /// `grant` holds.
        pub fn link<T: CapsView>(grant: &Capabilities, linker: &mut Linker<T>) -> anyhow::Result<()> {
            $(<$always as Link>::add_to_linker(linker)?;)*
            $(if <$cap as Slot>::slot(grant).is_some() {
                <$cap as Link>::add_to_linker(linker)?;
            })*
            Ok(())
        }
    };
}

crate::caps::registry::capabilities!(link_list);
