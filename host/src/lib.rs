//! stackhost: a maintenance host for PaaS clusters. It knows the cluster's
//! nodes and roles, owns the connections to them, and exposes exec, fs,
//! archive, postgres and docker capabilities to sandboxed WebAssembly
//! component plugins through the `stackhost:host` WIT package.

pub mod artifact;
pub mod bindings;
pub mod caps;
pub mod cli;
pub mod cluster;
pub mod duration;
pub mod executor;
pub mod grant;
pub mod inspect;
pub mod interrupt;
pub mod journal;
pub mod manifest;
pub mod paths;
pub mod progress;
pub mod rollout;
pub mod runtime;
pub mod sandbox;
pub mod sdk;
pub mod signing;
pub mod store;
