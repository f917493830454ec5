//! The vendor patches a plugin granted `patches` drives: found in the
//! plugin store, verified (file and signature) before every call, linked
//! once per run, and each call run in a fresh store of the patch's own,
//! under its own grant, with the caller's nodes and modes. What a patch
//! records is handed back to the caller's report.

use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::patches::InstalledPatch;
use crate::caps::ctx::CallCtx;
use crate::caps::patches::{PatchFuture, PatchOp, PatchRunner};
use crate::plugin::manifest::Kind;
use crate::plugin::signing::TrustedKeys;
use crate::plugin::store::{Installed, PluginStore, StoreError};
use crate::runtime::{CallError, CallLimits, CallReport, LoadedPlugin, Runtime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the host needs to run vendor patches for one run.
pub struct PatchHost {
    runtime: Runtime,
    store: PluginStore,
    keys: TrustedKeys,
    /// Limits for each call into a patch (the caller's own limits).
    limits: CallLimits,
    /// Linked patches by content digest, so a run links each once.
    loaded: Mutex<HashMap<String, Arc<LoadedPlugin>>>,
}

impl std::fmt::Debug for PatchHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchHost").finish_non_exhaustive()
    }
}

impl PatchHost {
    pub fn new(
        runtime: Runtime,
        store: PluginStore,
        keys: TrustedKeys,
        limits: CallLimits,
    ) -> PatchHost {
        PatchHost {
            runtime,
            store,
            keys,
            limits,
            loaded: Mutex::default(),
        }
    }

    /// The highest installed version of every vendor patch.
    fn installed(&self) -> Result<Vec<Installed>, WitError> {
        let mut newest: HashMap<String, Installed> = HashMap::new();
        for p in self.store.list().map_err(store_error)? {
            if p.kind() != Kind::Patch {
                continue;
            }
            match newest.get(p.name()) {
                Some(have) if have.version() >= p.version() => {}
                _ => {
                    newest.insert(p.name().to_string(), p);
                }
            }
        }
        Ok(newest.into_values().collect())
    }

    /// The installed patch called `name`.
    fn find(&self, name: &str) -> Result<Installed, WitError> {
        self.installed()?
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                WitError::NotFound(format!(
                    "no vendor patch named `{name}` is installed (see `stackhost plugin list`)"
                ))
            })
    }

    /// Verify the patch's file and signature (every time: a file or a
    /// trust that changed since the last call is caught), then link it.
    fn load(&self, p: &Installed) -> Result<Arc<LoadedPlugin>, WitError> {
        let wasm = self
            .store
            .verified_bytes(p, &self.keys)
            .map_err(store_error)?;
        let digest = &p.record.digest;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = loaded.get(digest) {
            return Ok(l.clone());
        }
        let l = self
            .runtime
            .load_patch(p.name(), digest, &wasm, p.record.grant.capabilities.clone())
            .map_err(|e| WitError::Failed(format!("patch `{}`: {e:#}", p.name())))?;
        let l = Arc::new(l);
        loaded.insert(digest.clone(), l.clone());
        Ok(l)
    }
}

/// A store refusal as the calling plugin sees it: a file or signature that
/// does not verify is a permission matter.
fn store_error(e: StoreError) -> WitError {
    match e {
        StoreError::Tampered { .. } | StoreError::Signature { .. } => {
            WitError::PermissionDenied(e.to_string())
        }
        other => WitError::Failed(other.to_string()),
    }
}

impl PatchHost {
    /// A call context for patch `p`: its own grant, the caller's nodes
    /// and modes.
    fn patch_ctx(&self, caller: &CallCtx, p: &LoadedPlugin) -> Arc<CallCtx> {
        Arc::new(
            CallCtx::new(
                p.name.clone(),
                caller.cluster.clone(),
                p.grant.clone(),
                caller.dry_run,
                caller.exec_timeout,
            )
            .read_only(caller.read_only),
        )
    }

    async fn info(&self, caller: &CallCtx, p: &Installed) -> Result<InstalledPatch, WitError> {
        let loaded = self.load(p)?;
        let report = loaded
            .patch_info(self.patch_ctx(caller, &loaded), self.limits)
            .await;
        let info = merge(caller, p.name(), report)?;
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
}

impl PatchRunner for PatchHost {
    fn list<'a>(&'a self, caller: &'a CallCtx) -> PatchFuture<'a, Vec<InstalledPatch>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for p in self.installed()? {
                out.push(self.info(caller, &p).await?);
            }
            out.sort_by(|a, b| (a.info.id, &a.info.name).cmp(&(b.info.id, &b.info.name)));
            Ok(out)
        })
    }

    fn run<'a>(
        &'a self,
        caller: &'a CallCtx,
        name: &'a str,
        node: &'a str,
        op: PatchOp,
    ) -> PatchFuture<'a, bool> {
        Box::pin(async move {
            let p = self.find(name)?;
            let loaded = self.load(&p)?;
            let node = node.to_string();
            let report = loaded
                .patch_op(self.patch_ctx(caller, &loaded), self.limits, op, &node)
                .await;
            merge(caller, name, report)
        })
    }
}

/// Pass what the patch recorded on to the caller, and its result.
fn merge<T>(caller: &CallCtx, patch: &str, report: CallReport<T>) -> Result<T, WitError> {
    for m in report.mutations {
        caller.record(&m.node, &m.call, format!("{} (patch {patch})", m.detail));
    }
    for e in report.events {
        caller.event(e.level, format!("{patch}: {}", e.message));
    }
    report.result.map_err(|e| match e {
        CallError::Plugin(e) => prefix(patch, e),
        other => WitError::Failed(other.to_string()),
    })
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
