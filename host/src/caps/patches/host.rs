//! The `patches` Host impl: each call goes to the run's [`PatchRunner`],
//! which verifies the patch and runs it in a fresh store of its own, and
//! its time counts as host time.

use super::Patches;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use wasmtime::component::{HasData, Linker};

use super::{Lent, PatchOp, PatchRunner};
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::patches::{self, InstalledPatch};
use crate::caps::ctx::CapView;
use std::sync::Arc;

type R<T> = wasmtime::Result<Result<T, WitError>>;

impl CapView<'_> {
    fn patch_runner(&self) -> Result<Arc<dyn PatchRunner>, WitError> {
        self.call
            .extensions
            .get::<Lent>()
            .map(|l| l.0.clone())
            .ok_or_else(|| {
                WitError::Unsupported("vendor patches are not available in this run".into())
            })
    }

    async fn patch_op(&self, name: &str, node: &str, op: PatchOp) -> Result<bool, WitError> {
        self.node(node)?;
        self.patch_runner()?.run(self.call, name, node, op).await
    }
}

impl patches::Host for CapView<'_> {
    async fn list(&mut self) -> R<Vec<InstalledPatch>> {
        let this = &*self;
        Ok(this
            .call
            .timed(async { this.patch_runner()?.list(this.call).await })
            .await)
    }

    async fn check(&mut self, name: String, node: String) -> R<bool> {
        let this = &*self;
        Ok(this
            .call
            .timed(this.patch_op(&name, &node, PatchOp::Check))
            .await)
    }

    async fn apply(&mut self, name: String, node: String) -> R<()> {
        let this = &*self;
        Ok(this
            .call
            .timed(this.patch_op(&name, &node, PatchOp::Apply))
            .await
            .map(|_| ()))
    }

    async fn revert(&mut self, name: String, node: String) -> R<()> {
        let this = &*self;
        Ok(this
            .call
            .timed(this.patch_op(&name, &node, PatchOp::Revert))
            .await
            .map(|_| ()))
    }
}

impl HasData for Patches {
    type Data<'a> = CapView<'a>;
}

impl Link for Patches {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        patches::add_to_linker::<T, Patches>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}
