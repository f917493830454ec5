//! The fs grant check. Paths must be absolute with no `..`; symlinks are
//! resolved on the node first, so the check applies to where the call
//! really lands, and a link that points out of the grant is refused.

use crate::bindings::WitError;
use crate::cluster::Node;
use crate::grant::{Grant, path_within, roles_allow};
use std::path::{Component, Path, PathBuf};

/// What a call does to the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Whether the final component is followed when it is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    Follow,
    /// The call acts on the link itself (stat, remove, rename, symlink).
    Keep,
}

/// Check `path` for `access` on `node`; returns the resolved path the call
/// must use.
pub async fn check(
    grant: &Grant,
    node: &Node,
    path: &str,
    access: Access,
    last: Final,
) -> Result<PathBuf, WitError> {
    let Some(fs) = &grant.capabilities.fs else {
        return Err(WitError::PermissionDenied(
            "the plugin has no fs grant".into(),
        ));
    };
    let name = &node.info.name;
    let what = match access {
        Access::Read => "read",
        Access::Write => "write",
    };
    let roots: Vec<&String> = match access {
        Access::Read => fs.read.iter().chain(&fs.write).collect(),
        Access::Write => fs.write.iter().collect(),
    };
    let grant_text = || {
        let list: Vec<&str> = roots.iter().map(|s| s.as_str()).collect();
        format!(
            "fs {what}: {}",
            if list.is_empty() {
                "none".into()
            } else {
                list.join(", ")
            }
        )
    };
    if !roles_allow(&fs.roles, &node.info.roles) {
        return Err(WitError::PermissionDenied(format!(
            "fs on node {name} is outside the grant (fs roles: {})",
            fs.roles.join(", ")
        )));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(WitError::InvalidArgument(format!(
            "fs path `{path}` is not absolute"
        )));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(WitError::PermissionDenied(format!(
            "fs {what} of `{path}` on node {name}: `..` is not allowed in paths ({})",
            grant_text()
        )));
    }
    let resolved = node.transport.resolve(p, last == Final::Follow).await?;
    for root in &roots {
        let root = node
            .transport
            .resolve(Path::new(root.as_str()), true)
            .await?;
        if path_within(&resolved, &root) {
            return Ok(resolved);
        }
    }
    let landing = if resolved != p {
        format!(" resolves to `{}`, which", resolved.display())
    } else {
        String::new()
    };
    Err(WitError::PermissionDenied(format!(
        "fs {what} of `{path}` on node {name}{landing} is outside the grant ({})",
        grant_text()
    )))
}
