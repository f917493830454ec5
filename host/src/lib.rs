//! stackhost: a maintenance host for PaaS clusters. It knows the cluster's
//! nodes and roles, owns the connections to them, and lends capabilities
//! (see [`caps::registry`]) to sandboxed WebAssembly component plugins
//! through the `stackhost:host` WIT package.
//!
//! # Layers
//!
//! Each layer imports only the layers below it; what two layers both need
//! lives in a leaf at the bottom, never sideways. `tests/layers.rs` keeps
//! the order (and `../shared/tools/modgraph` finds no cycle).
//!
//! ```text
//! cli        the command line: arguments parsed with no I/O, then resolved and run
//! run        plan, apply (the rollout), report, journal, progress, interrupts
//! plugin     manifest, inspection, grants, signatures, the plugin store
//! runtime    the wasmtime engine, compile cache, limits, a linker per plugin
//! caps       the capabilities plugins call, one folder each, and their registry
//! cluster    inventory, node selection, SSH and local nodes, byte streams
//! artifact   the archive format: writer, reader, the handles plugins hold
//! sandbox    handle-based file operations beneath pinned roots
//! text, redact, time, process, paths    leaves every layer may use
//! ```

pub mod artifact;
pub mod caps;
pub mod cli;
pub mod cluster;
pub mod paths;
pub mod plugin;
pub mod process;
pub mod redact;
pub mod run;
pub mod runtime;
pub mod sandbox;
pub mod text;
pub mod time;
