//! Reading a plugin file without running it: is it a WebAssembly component,
//! and what does its embedded manifest say.

use crate::plugin::manifest::{Manifest, ManifestError, SECTION};
use wasmparser::{Encoding, Parser, Payload};

/// Largest manifest accepted: it is shown at install, stored, and read on
/// every later command.
pub const MAX_MANIFEST: usize = 256 << 10;

/// Why a file is not a usable plugin.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic number)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build the plugin for \
         `wasm32-wasip2` (cargo build --target wasm32-wasip2) so it becomes a component"
    )]
    CoreModule,
    #[error("the WebAssembly binary is malformed: {0}")]
    Malformed(String),
    #[error(
        "the component carries no `{SECTION}` section; plugins declare their manifest with \
         stackhost_sdk::export_plugin! (see wit/MANIFEST.md)"
    )]
    NoManifest,
    #[error(
        "the `{SECTION}` section is {0} bytes, more than the {MAX_MANIFEST} bytes a manifest may be"
    )]
    ManifestTooLarge(usize),
    #[error("the component carries more than one `{SECTION}` section")]
    DuplicateManifest,
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Check that `bytes` is a component and return its manifest.
// The manifest arm stays a plain `if`: a guard with a side effect would hide it.
#[allow(clippy::collapsible_match)]
pub fn read_manifest(bytes: &[u8]) -> Result<Manifest, InspectError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(InspectError::NotWasm);
    }
    let mut found: Option<&[u8]> = None;
    let mut first = true;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| InspectError::Malformed(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } if first => {
                first = false;
                if encoding == Encoding::Module {
                    return Err(InspectError::CoreModule);
                }
            }
            // The SDK's section lives in the core module nested inside the
            // component; parse_all walks nested modules too.
            Payload::CustomSection(section) if section.name() == SECTION => {
                if found.replace(section.data()).is_some() {
                    return Err(InspectError::DuplicateManifest);
                }
            }
            _ => {}
        }
    }
    let data = found.ok_or(InspectError::NoManifest)?;
    if data.len() > MAX_MANIFEST {
        return Err(InspectError::ManifestTooLarge(data.len()));
    }
    Ok(Manifest::parse(data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_wasm() {
        assert!(matches!(
            read_manifest(b"#!/bin/sh\necho hi\n"),
            Err(InspectError::NotWasm)
        ));
    }

    #[test]
    fn refuses_core_module() {
        // The smallest valid core module: magic and version 1.
        let module = b"\0asm\x01\0\0\0";
        assert!(matches!(
            read_manifest(module),
            Err(InspectError::CoreModule)
        ));
    }

    #[test]
    fn refuses_truncated_component() {
        // Component layer header followed by a section that runs off the end.
        let bytes = b"\0asm\x0d\0\x01\0\x01\xff\x01";
        assert!(matches!(
            read_manifest(bytes),
            Err(InspectError::Malformed(_))
        ));
    }
}
