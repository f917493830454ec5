//! Host bindings generated from `wit/` (package `stackhost:host`): world
//! `plugin` at the top, world `plugin-0-1-0` (plugins built against 0.1.0,
//! which export `plugin-api`) in [`legacy`] and world `patch` in [`patch`],
//! all sharing the imported interfaces so one `Host` impl serves every
//! world. A 0.1.0 component's imports (`stackhost:host/nodes@0.1.0`) are
//! matched to the 0.1.1 interfaces by wasmtime's semver-compatible lookup.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "stackhost:host/archive.writer": crate::artifact::handle::ArtifactWriter,
        "stackhost:host/archive.reader": crate::artifact::handle::ArtifactReader,
    },
});

/// World `plugin-0-1-0`: a plugin built against `stackhost:host@0.1.0`.
pub mod legacy {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin-0-1-0",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "stackhost:host/types": crate::caps::bindings::stackhost::host::types,
            "stackhost:host/nodes": crate::caps::bindings::stackhost::host::nodes,
            "stackhost:host/exec": crate::caps::bindings::stackhost::host::exec,
            "stackhost:host/fs": crate::caps::bindings::stackhost::host::fs,
            "stackhost:host/archive": crate::caps::bindings::stackhost::host::archive,
            "stackhost:host/postgres": crate::caps::bindings::stackhost::host::postgres,
            "stackhost:host/docker": crate::caps::bindings::stackhost::host::docker,
            "stackhost:host/patches": crate::caps::bindings::stackhost::host::patches,
            "stackhost:host/log": crate::caps::bindings::stackhost::host::log,
        },
    });
}

/// World `patch`: a vendor patch.
pub mod patch {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "patch",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "stackhost:host/types": crate::caps::bindings::stackhost::host::types,
            "stackhost:host/nodes": crate::caps::bindings::stackhost::host::nodes,
            "stackhost:host/exec": crate::caps::bindings::stackhost::host::exec,
            "stackhost:host/fs": crate::caps::bindings::stackhost::host::fs,
            "stackhost:host/log": crate::caps::bindings::stackhost::host::log,
        },
    });
}

pub use self::stackhost::host::types::Error as WitError;

/// The version of the `stackhost:host` WIT package this host serves.
pub const WIT_VERSION: semver::Version = semver::Version::new(0, 1, 1);

/// The WIT package's name.
pub const WIT_PACKAGE: &str = "stackhost:host";
