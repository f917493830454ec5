//! The fs grant check. A plugin's path must be absolute with no `..`; it
//! is matched by components against the grant roots as the manifest
//! names them, never resolved here. The call then runs beneath the
//! matching root's pinned handle on the node (see [`crate::sandbox`]), so
//! a symlink or a swapped directory cannot carry it outside.

use super::Fs;
use crate::caps::bindings::WitError;
use crate::caps::registry::Capabilities;
use crate::caps::roles_allow;
use crate::cluster::Node;
use crate::sandbox::path::{LinkPolicy, normalize};
use crate::sandbox::wire::Loc;
use std::path::Path;

/// What a call does to the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A checked path: where it is on the node.
#[derive(Debug, Clone)]
pub struct Checked {
    pub loc: Loc,
}

fn roots(grant: &Capabilities, access: Access) -> Vec<&String> {
    let Some(fs) = grant.get::<Fs>() else {
        return Vec::new();
    };
    match access {
        Access::Read => fs.read.iter().chain(&fs.write).collect(),
        Access::Write => fs.write.iter().collect(),
    }
}

/// Which symlinks a copy or unpack under this grant may create.
pub fn link_policy(grant: &Capabilities) -> LinkPolicy {
    LinkPolicy {
        write_roots: roots(grant, Access::Write)
            .into_iter()
            .filter_map(|r| normalize(Path::new(r)))
            .collect(),
    }
}

/// Check `path` for `access` on `node` and pin its grant root there.
pub async fn check(
    grant: &Capabilities,
    node: &Node,
    path: &str,
    access: Access,
) -> Result<Checked, WitError> {
    let Some(fs) = grant.get::<Fs>() else {
        return Err(WitError::PermissionDenied(
            "the plugin has no fs grant".into(),
        ));
    };
    let name = &node.info.name;
    let what = match access {
        Access::Read => "read",
        Access::Write => "write",
    };
    let roots = roots(grant, access);
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
    if path.contains('\0') {
        return Err(WitError::InvalidArgument(format!(
            "fs path `{}` contains a NUL byte",
            path.escape_debug()
        )));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(WitError::InvalidArgument(format!(
            "fs path `{path}` is not absolute"
        )));
    }
    let Some(normal) = normalize(p) else {
        return Err(WitError::PermissionDenied(format!(
            "fs {what} of `{path}` on node {name}: `..` is not allowed in paths ({})",
            grant_text()
        )));
    };
    let root = roots
        .iter()
        .filter_map(|r| normalize(Path::new(r.as_str())))
        .filter(|r| normal.starts_with(r))
        .max_by_key(|r| r.components().count());
    let Some(root) = root else {
        return Err(WitError::PermissionDenied(format!(
            "fs {what} of `{path}` on node {name} is outside the grant ({})",
            grant_text()
        )));
    };
    let rel = normal
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let pinned = node.pin(&root).await?;
    Ok(Checked {
        loc: Loc { root: pinned, rel },
    })
}
