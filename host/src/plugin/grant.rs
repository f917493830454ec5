//! Grants: the capabilities the operator accepted for one plugin file
//! (keyed by its content digest), and the scope checks every capability
//! call goes through. A refusal names the grant that would have allowed it.

use crate::plugin::manifest::Capabilities;
use serde::{Deserialize, Serialize};

/// The stackhost interfaces a grant can name. `nodes`, `log` and `types`
/// come with every plugin.
pub const GRANTABLE: &[&str] = &["exec", "fs", "archive", "postgres", "docker", "patches"];

/// What the operator granted a plugin: a subset of its requests, each with
/// the scope the manifest asked for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub capabilities: Capabilities,
}

impl Grant {
    /// Grant every request of the manifest.
    pub fn all(requested: &Capabilities) -> Grant {
        Grant {
            capabilities: requested.clone(),
        }
    }

    /// Grant only the named capabilities; each must have been requested.
    pub fn only(requested: &Capabilities, names: &[String]) -> Result<Grant, String> {
        let mut caps = Capabilities::default();
        for name in names {
            let missing = || format!("cannot grant `{name}`: the plugin does not request it");
            match name.as_str() {
                "exec" => caps.exec = Some(requested.exec.clone().ok_or_else(missing)?),
                "fs" => caps.fs = Some(requested.fs.clone().ok_or_else(missing)?),
                "archive" => caps.archive = Some(requested.archive.clone().ok_or_else(missing)?),
                "postgres" => caps.postgres = Some(requested.postgres.clone().ok_or_else(missing)?),
                "docker" => caps.docker = Some(requested.docker.clone().ok_or_else(missing)?),
                "patches" => caps.patches = Some(requested.patches.clone().ok_or_else(missing)?),
                other => {
                    return Err(format!(
                        "unknown capability `{other}` (known: {})",
                        GRANTABLE.join(", ")
                    ));
                }
            }
        }
        Ok(Grant { capabilities: caps })
    }

    /// Whether the interface `name` (`exec`, `fs`, ...) is granted.
    pub fn has(&self, name: &str) -> bool {
        let c = &self.capabilities;
        match name {
            "types" | "nodes" | "log" | "run" => true,
            "exec" => c.exec.is_some(),
            "fs" => c.fs.is_some(),
            "archive" => c.archive.is_some(),
            "postgres" => c.postgres.is_some(),
            "docker" => c.docker.is_some(),
            "patches" => c.patches.is_some(),
            _ => false,
        }
    }

    /// Names of the granted interfaces, for display.
    pub fn names(&self) -> Vec<&'static str> {
        GRANTABLE.iter().copied().filter(|n| self.has(n)).collect()
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

/// Does `path` lie at or under `root`? Both must be normalised absolute
/// paths; the comparison is by components, so `/tmp/ab` is not under
/// `/tmp/a`.
pub fn path_within(path: &std::path::Path, root: &std::path::Path) -> bool {
    path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn path_within_compares_components() {
        assert!(path_within(Path::new("/tmp/a/b"), Path::new("/tmp/a")));
        assert!(path_within(Path::new("/tmp/a"), Path::new("/tmp/a")));
        assert!(!path_within(Path::new("/tmp/ab"), Path::new("/tmp/a")));
        assert!(!path_within(Path::new("/etc"), Path::new("/tmp")));
    }

    #[test]
    fn roles_scope() {
        let dea = vec!["dea".to_string()];
        assert!(roles_allow(&[], &dea));
        assert!(roles_allow(&dea, &dea));
        assert!(!roles_allow(&["router".to_string()], &dea));
    }

    #[test]
    fn only_refuses_unrequested() {
        let err = Grant::only(&Capabilities::default(), &["fs".into()]).unwrap_err();
        assert!(err.contains("does not request it"), "{err}");
        let err = Grant::only(&Capabilities::default(), &["net".into()]).unwrap_err();
        assert!(err.contains("unknown capability `net`"), "{err}");
    }
}
