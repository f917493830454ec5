//! The vendor patches installed on the operator's host, for a plugin
//! granted `patches` (the `patch` plugin). Each call runs the patch
//! sandboxed under its own grant, after the host verified its file and
//! signature; under `--dry-run` the patch's mutating calls are recorded
//! into this plugin's report.

use crate::bindings::stackhost::host::patches as wit;
use crate::{Node, Result};

/// An installed vendor patch.
pub use crate::bindings::stackhost::host::patches::InstalledPatch;

/// Every installed vendor patch (the highest version of each), by id.
pub fn list() -> Result<Vec<InstalledPatch>> {
    wit::list().map_err(Into::into)
}

/// Whether patch `name` is in place on `node`.
pub fn check(name: &str, node: &Node) -> Result<bool> {
    wit::check(name, node.name()).map_err(Into::into)
}

/// Apply patch `name` on `node`.
pub fn apply(name: &str, node: &Node) -> Result<()> {
    wit::apply(name, node.name()).map_err(Into::into)
}

/// Undo patch `name` on `node`.
pub fn revert(name: &str, node: &Node) -> Result<()> {
    wit::revert(name, node.name()).map_err(Into::into)
}
