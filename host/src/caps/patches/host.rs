//! The `patches` Host impl: each call verifies the patch, runs it in a
//! fresh store of its own (its grant, the caller's cluster, dry-run and
//! read-only modes), and hands what it recorded back to the caller's
//! report.

use super::PatchHost;
use crate::caps::CapView;
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::patches::{self, InstalledPatch};
use crate::plugin::store::Installed;
use crate::runtime::{CallCtx, CallError, CallReport, LoadedPlugin, PatchOp};
use std::sync::Arc;

type R<T> = wasmtime::Result<Result<T, WitError>>;

impl CapView<'_> {
    fn patch_host(&self) -> Result<Arc<PatchHost>, WitError> {
        self.call.patches.clone().ok_or_else(|| {
            WitError::Unsupported("vendor patches are not available in this run".into())
        })
    }

    /// A call context for patch `p`: its own grant, the caller's nodes
    /// and modes.
    fn patch_ctx(&self, p: &LoadedPlugin) -> Arc<CallCtx> {
        let c = self.call;
        Arc::new(
            CallCtx::new(
                p.name.clone(),
                c.cluster.clone(),
                p.grant.clone(),
                c.dry_run,
                c.exec_timeout,
            )
            .read_only(c.read_only),
        )
    }

    /// Pass what the patch recorded on to the caller, and its result.
    fn merge<T>(&self, patch: &str, report: CallReport<T>) -> Result<T, WitError> {
        for m in report.mutations {
            self.call
                .record(&m.node, &m.call, format!("{} (patch {patch})", m.detail));
        }
        for e in report.events {
            self.call.event(e.level, format!("{patch}: {}", e.message));
        }
        report.result.map_err(|e| match e {
            CallError::Plugin(e) => prefix(patch, e),
            other => WitError::Failed(other.to_string()),
        })
    }

    async fn info(&self, host: &PatchHost, p: &Installed) -> Result<InstalledPatch, WitError> {
        let loaded = host.load(p)?;
        let report = loaded
            .patch_info(self.patch_ctx(&loaded), host.limits)
            .await;
        let info = self.merge(p.name(), report)?;
        if info.name != p.name() {
            return Err(WitError::Failed(format!(
                "patch `{}` calls itself `{}` in its info; the two must agree",
                p.name(),
                info.name
            )));
        }
        Ok(InstalledPatch {
            info,
            version: p.version().to_string(),
            digest: p.record.digest.clone(),
            signer: p.record.signer.as_ref().map(|s| s.to_string()),
        })
    }

    async fn op(&self, name: &str, node: &String, op: PatchOp) -> Result<bool, WitError> {
        self.node(node)?;
        let host = self.patch_host()?;
        let p = host.find(name)?;
        let loaded = host.load(&p)?;
        let report = loaded
            .patch_op(self.patch_ctx(&loaded), host.limits, op, node)
            .await;
        self.merge(name, report)
    }
}

/// The patch's own error, saying which patch it came from.
fn prefix(patch: &str, e: WitError) -> WitError {
    let p = |m: String| format!("patch {patch}: {m}");
    match e {
        WitError::PermissionDenied(m) => WitError::PermissionDenied(p(m)),
        WitError::NotFound(m) => WitError::NotFound(p(m)),
        WitError::Unreachable(m) => WitError::Unreachable(p(m)),
        WitError::Timeout(m) => WitError::Timeout(p(m)),
        WitError::InvalidArgument(m) => WitError::InvalidArgument(p(m)),
        WitError::Unsupported(m) => WitError::Unsupported(p(m)),
        WitError::Io(m) => WitError::Io(p(m)),
        WitError::Failed(m) => WitError::Failed(p(m)),
    }
}

impl patches::Host for CapView<'_> {
    async fn list(&mut self) -> R<Vec<InstalledPatch>> {
        let this = &*self;
        Ok(this
            .call
            .timed(async {
                let host = this.patch_host()?;
                let mut out = Vec::new();
                for p in host.installed()? {
                    out.push(this.info(&host, &p).await?);
                }
                out.sort_by(|a, b| (a.info.id, &a.info.name).cmp(&(b.info.id, &b.info.name)));
                Ok(out)
            })
            .await)
    }

    async fn check(&mut self, name: String, node: String) -> R<bool> {
        let this = &*self;
        Ok(this.call.timed(this.op(&name, &node, PatchOp::Check)).await)
    }

    async fn apply(&mut self, name: String, node: String) -> R<()> {
        let this = &*self;
        Ok(this
            .call
            .timed(this.op(&name, &node, PatchOp::Apply))
            .await
            .map(|_| ()))
    }

    async fn revert(&mut self, name: String, node: String) -> R<()> {
        let this = &*self;
        Ok(this
            .call
            .timed(this.op(&name, &node, PatchOp::Revert))
            .await
            .map(|_| ()))
    }
}
