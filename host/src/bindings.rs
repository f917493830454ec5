//! Host bindings generated from `wit/` (package `stackhost:host`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::stackhost::host::types::Error as WitError;

/// The version of the `stackhost:host` WIT package this host serves.
pub const WIT_VERSION: semver::Version = semver::Version::new(0, 1, 0);

/// The WIT package's name.
pub const WIT_PACKAGE: &str = "stackhost:host";
