//! The on-disk compile cache: a plugin is compiled once per content digest
//! and engine configuration, then loaded from `~/.cache/stackhost/compiled`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a component came from the cache or was compiled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    Hit,
    Compiled,
}

/// The cache file for a component with `digest` under `engine`.
pub fn cache_path(dir: &Path, engine: &Engine, digest: &str) -> PathBuf {
    // DefaultHasher::new() uses fixed keys, so this is stable across runs
    // of the same binary, which is all the cache needs.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
}

/// Load the component from the cache, or compile `wasm` and store it.
pub fn load_or_compile(
    dir: &Path,
    engine: &Engine,
    digest: &str,
    wasm: impl FnOnce() -> std::io::Result<Vec<u8>>,
) -> anyhow::Result<(Component, CacheOutcome)> {
    let path = cache_path(dir, engine, digest);
    if path.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility hash, in a directory only this user
        // writes; wasmtime still checks its header and refuses a mismatch.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok((component, CacheOutcome::Hit)),
            Err(e) => tracing::warn!("ignoring unusable compile cache {}: {e}", path.display()),
        }
    }
    let bytes = wasm()?;
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(anyhow::Error::from)?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &compiled)?;
    std::fs::rename(&tmp, &path)?;
    // SAFETY: as above; these bytes were produced by this very engine.
    let component =
        unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)?;
    Ok((component, CacheOutcome::Compiled))
}
