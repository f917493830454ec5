//! `stackhost:host/patches`: the installed vendor patches, lent to the
//! plugin that manages them. Each patch runs sandboxed in its own store
//! under its own grant; its file and signature are verified before every
//! call, so a patch altered or signed by a key no longer trusted is never
//! run.

mod host;

use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::patches::{self, InstalledPatch};
use crate::caps::ctx::CapView;
use crate::caps::ctx::{CallCtx, CapsView};
use crate::caps::registry::{Capability, Granted};
use crate::text::escape_line;
use semver::Version;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use wasmtime::component::{HasData, Linker};

/// Marker for the `patches` interface.
pub struct Patches;

impl HasData for Patches {
    type Data<'a> = CapView<'a>;
}

impl Capability for Patches {
    const NAME: &'static str = "patches";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = false;

    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        patches::add_to_linker::<T, Patches>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}

/// What a vendor patch can be asked to do on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOp {
    Check,
    Apply,
    Revert,
}

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

/// `[capabilities.patches]`: use of the installed vendor patches (list,
/// check, apply, revert).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PatchesGrant {
    pub reason: String,
}

impl Granted for Patches {
    type Grant = PatchesGrant;

    fn validate(_: &PatchesGrant) -> Result<(), String> {
        Ok(())
    }

    fn describe(p: &PatchesGrant) -> String {
        format!(
            "patches: list, check, apply and revert the installed vendor patches — {}",
            escape_line(&p.reason)
        )
    }
}
