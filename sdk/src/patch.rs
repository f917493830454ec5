//! The [`Patch`] trait a vendor patch implements, and the adapter that
//! turns it into the component's `patch-api` export (used by
//! [`export_patch!`](crate::export_patch)).

use crate::bindings::stackhost::host::types::Error as WitError;
use crate::patch_bindings::exports::stackhost::host::patch_api as wit;
use crate::{Node, Result};
use std::marker::PhantomData;

/// What a patch says of itself, like a paragraph of `kato patch status`.
pub use crate::bindings::stackhost::host::types::PatchInfo;

/// A vendor patch: one fix, applied node by node.
///
/// The host calls each function in a fresh instance, with the grant the
/// operator gave the patch at install. `check` must only read; `apply`
/// and `revert` should be idempotent (the `patch` plugin calls `apply`
/// only where `check` said no, but a node may have changed in between).
pub trait Patch {
    /// The patch's id, name, description, product versions and roles.
    fn info() -> PatchInfo;

    /// Whether the patch is in place on `node`.
    fn check(node: &Node) -> Result<bool>;

    /// Apply the patch on `node`, keeping what is needed to revert it.
    fn apply(node: &Node) -> Result<()>;

    /// Restore what `apply` changed on `node`, byte for byte.
    fn revert(node: &Node) -> Result<()>;
}

/// Implements the generated `Guest` trait for any [`Patch`].
#[doc(hidden)]
pub struct ExportPatch<P>(PhantomData<fn() -> P>);

impl<P: Patch> wit::Guest for ExportPatch<P> {
    fn info() -> PatchInfo {
        P::info()
    }

    fn check(node: String) -> Result<bool, WitError> {
        P::check(&Node::named(node)).map_err(Into::into)
    }

    fn apply(node: String) -> Result<(), WitError> {
        P::apply(&Node::named(node)).map_err(Into::into)
    }

    fn revert(node: String) -> Result<(), WitError> {
        P::revert(&Node::named(node)).map_err(Into::into)
    }
}
