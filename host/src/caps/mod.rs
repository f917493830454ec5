//! Host capabilities, one module each: `exec`, `fs`, `nodes`, `log`,
//! `run`, `archive`, `postgres`, `patches` (and the shared `types`). Each has
//! `mod.rs` (the marker type and its `add_to_linker`), `host.rs` (the
//! generated `Host` trait's impl) and, where calls are scoped, `scope.rs`
//! (the grant check); `docker` reaches each node's own engine.

pub mod archive;
pub mod bindings;
pub mod docker;
pub mod exec;
pub mod fs;
pub mod log;
pub mod nodes;
pub mod patches;
pub mod postgres;
pub mod run;
pub mod types;

use crate::caps::bindings::WitError;
use crate::cluster::{Node, NodeError};
use crate::runtime::CallCtx;
use std::sync::Arc;

/// The view every capability's `Host` impl works on: the call context.
pub struct CapView<'a> {
    pub call: &'a CallCtx,
}

/// One line for a WIT error, as the operator sees it.
pub fn describe_error(e: &WitError) -> String {
    match e {
        WitError::PermissionDenied(m) => format!("permission denied: {m}"),
        WitError::NotFound(m) => format!("not found: {m}"),
        WitError::Unreachable(m) => format!("unreachable: {m}"),
        WitError::Timeout(m) => format!("timeout: {m}"),
        WitError::InvalidArgument(m) => format!("invalid argument: {m}"),
        WitError::Unsupported(m) => format!("unsupported: {m}"),
        WitError::Io(m) => format!("i/o error: {m}"),
        WitError::Failed(m) => m.clone(),
    }
}

impl From<NodeError> for WitError {
    fn from(e: NodeError) -> WitError {
        match e {
            NodeError::NotFound(m) => WitError::NotFound(m),
            NodeError::Unreachable(m) => WitError::Unreachable(m),
            NodeError::Timeout(m) => WitError::Timeout(m),
            NodeError::InvalidArgument(m) => WitError::InvalidArgument(m),
            NodeError::Io(m) => WitError::Io(m),
            NodeError::Failed(m) => WitError::Failed(m),
            NodeError::Denied(m) => WitError::PermissionDenied(m),
        }
    }
}

impl CapView<'_> {
    /// The node called `name`, if the run selected it.
    pub fn node(&self, name: &str) -> Result<Arc<Node>, WitError> {
        self.call.cluster.get(name).cloned().ok_or_else(|| {
            WitError::NotFound(format!(
                "node `{name}` is not part of this run (see `stackhost node list`)"
            ))
        })
    }
}
