//! The seam between the `patches` capability and the layers that can run
//! a vendor patch (the plugin store and the runtime, above the
//! capabilities): a trait they implement for a run, lent to the capability
//! through the call context's extensions.

use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::patches::InstalledPatch;
use crate::caps::ctx::CallCtx;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a vendor patch can be asked to do on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOp {
    Check,
    Apply,
    Revert,
}

/// The run's vendor patches, as it lends them to the `patches`
/// capability (see [`crate::caps::ctx::Extensions`]).
#[derive(Clone)]
pub struct Lent(pub Arc<dyn PatchRunner>);

/// A future the patch runner returns.
pub type PatchFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, WitError>> + Send + 'a>>;

/// The installed vendor patches, as a plugin granted `patches` reaches
/// them: found in the plugin store and run in the runtime, both layers
/// above the capabilities, which implement this for a run. Each call runs
/// the patch in a fresh store of its own, under its own grant, with the
/// caller's nodes and modes, and passes what it recorded back to
/// `caller`.
pub trait PatchRunner: Send + Sync + std::fmt::Debug {
    /// Every installed vendor patch (its highest version), with its info.
    fn list<'a>(&'a self, caller: &'a CallCtx) -> PatchFuture<'a, Vec<InstalledPatch>>;

    /// Run `op` of patch `name` for `node`: whether the patch is in place
    /// (for `check`; true after `apply`, false after `revert`).
    fn run<'a>(
        &'a self,
        caller: &'a CallCtx,
        name: &'a str,
        node: &'a str,
        op: PatchOp,
    ) -> PatchFuture<'a, bool>;
}
