//! The capabilities plugins call: one folder per WIT interface of
//! `stackhost:host`, each with `mod.rs` (the marker type, its manifest
//! section and its [`registry::Capability`] impl), `host.rs` (the
//! generated `Host` trait's impl) and, where calls are scoped, `scope.rs`
//! (the grant check). [`registry`] lists them; [`ctx`] is what a call sees;
//! [`bindings`] are the generated WIT bindings.

pub mod archive;
pub mod bindings;
pub mod ctx;
pub mod docker;
pub mod exec;
pub mod fs;
pub mod interface;
pub mod linker;
pub mod log;
pub mod nodes;
pub mod patches;
pub mod postgres;
pub mod registry;
pub mod run;
pub mod types;

use crate::cluster::NodeError;
use bindings::WitError;

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

/// Whether a node with `node_roles` lies within a capability limited to
/// `scope_roles` (empty: every node).
pub fn roles_allow(scope_roles: &[String], node_roles: &[String]) -> bool {
    scope_roles.is_empty()
        || scope_roles
            .iter()
            .any(|r| r == "*" || node_roles.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_scope() {
        let dea = vec!["dea".to_string()];
        assert!(roles_allow(&[], &dea));
        assert!(roles_allow(&dea, &dea));
        assert!(!roles_allow(&["router".to_string()], &dea));
    }
}
