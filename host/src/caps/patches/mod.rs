//! `stackhost:host/patches`: the installed vendor patches, lent to the
//! plugin that manages them. Each patch runs sandboxed in its own store
//! under its own grant; its file and signature are verified before every
//! call, so a patch altered or signed by a key no longer trusted is never
//! run.

mod host;

use super::CapView;
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::patches;
use crate::plugin::manifest::Kind;
use crate::plugin::signing::TrustedKeys;
use crate::plugin::store::{Installed, PluginStore, StoreError};
use crate::runtime::{CallLimits, LoadedPlugin, PluginState, Runtime};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasData, Linker};

/// Marker for the `patches` interface.
pub struct Patches;

impl HasData for Patches {
    type Data<'a> = CapView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    patches::add_to_linker::<PluginState, Patches>(linker, |s| CapView { call: &s.call })
        .map_err(anyhow::Error::from)
}

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
            .load_patch(p.name(), digest, &wasm, p.record.grant.clone())
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
