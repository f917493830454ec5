//! Host bindings generated from `wit/` (package `stackhost:host`): world
//! `plugin` at the top, world `patch` in [`patch`], sharing the imported
//! interfaces so one `Host` impl serves both.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "stackhost:host/archive.writer": crate::caps::archive::ArtifactWriter,
        "stackhost:host/archive.reader": crate::caps::archive::ArtifactReader,
    },
});

/// World `patch`: a vendor patch.
pub mod patch {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "patch",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "stackhost:host/types": crate::bindings::stackhost::host::types,
            "stackhost:host/nodes": crate::bindings::stackhost::host::nodes,
            "stackhost:host/exec": crate::bindings::stackhost::host::exec,
            "stackhost:host/fs": crate::bindings::stackhost::host::fs,
            "stackhost:host/log": crate::bindings::stackhost::host::log,
        },
    });
}

pub use self::stackhost::host::types::Error as WitError;

/// The version of the `stackhost:host` WIT package this host serves.
pub const WIT_VERSION: semver::Version = semver::Version::new(0, 1, 0);

/// The WIT package's name.
pub const WIT_PACKAGE: &str = "stackhost:host";
