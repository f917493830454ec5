//! The exec grant check: the program must be listed, by the exact name or
//! absolute path the plugin uses, and the node must hold a granted role.

use crate::bindings::WitError;
use crate::cluster::NodeInfo;
use crate::grant::{Grant, roles_allow};

/// How a permitted program may be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramAccess {
    /// Only reads: runs during `--dry-run` too.
    ReadOnly,
    /// May change the node: recorded, not run, during `--dry-run`.
    Mutating,
}

pub fn check(grant: &Grant, node: &NodeInfo, program: &str) -> Result<ProgramAccess, WitError> {
    let Some(exec) = &grant.capabilities.exec else {
        return Err(WitError::PermissionDenied(
            "the plugin has no exec grant".into(),
        ));
    };
    if !roles_allow(&exec.roles, &node.roles) {
        return Err(WitError::PermissionDenied(format!(
            "exec on node {} is outside the grant (exec roles: {})",
            node.name,
            exec.roles.join(", ")
        )));
    }
    if exec.read_only.iter().any(|p| p == program) {
        return Ok(ProgramAccess::ReadOnly);
    }
    if exec.programs.iter().any(|p| p == program) {
        return Ok(ProgramAccess::Mutating);
    }
    let all: Vec<&str> = exec
        .programs
        .iter()
        .chain(&exec.read_only)
        .map(String::as_str)
        .collect();
    Err(WitError::PermissionDenied(format!(
        "program `{program}` is not in the exec grant (exec programs: {})",
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    )))
}

/// Environment variables a plugin may not set: they change which code a
/// granted program runs.
pub fn env_refused(name: &str) -> bool {
    name.starts_with("LD_")
        || name == "PATH"
        || name == "BASH_ENV"
        || name == "ENV"
        || name.starts_with("PYTHON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Capabilities, ExecRequest};

    fn grant() -> Grant {
        Grant {
            capabilities: Capabilities {
                exec: Some(ExecRequest {
                    reason: "t".into(),
                    programs: vec!["touch".into()],
                    read_only: vec!["cat".into()],
                    roles: vec!["dea".into()],
                }),
                ..Default::default()
            },
        }
    }

    fn node(roles: &[&str]) -> NodeInfo {
        NodeInfo {
            name: "n".into(),
            address: "".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            is_local: true,
        }
    }

    #[test]
    fn loader_variables_are_refused() {
        assert!(env_refused("LD_PRELOAD") && env_refused("PATH") && !env_refused("LANG"));
    }

    #[test]
    fn classifies_and_refuses() {
        assert_eq!(
            check(&grant(), &node(&["dea"]), "cat").unwrap(),
            ProgramAccess::ReadOnly
        );
        assert_eq!(
            check(&grant(), &node(&["dea"]), "touch").unwrap(),
            ProgramAccess::Mutating
        );
        let WitError::PermissionDenied(m) = check(&grant(), &node(&["dea"]), "rm").unwrap_err()
        else {
            panic!()
        };
        assert!(
            m.contains("`rm` is not in the exec grant (exec programs: touch, cat)"),
            "{m}"
        );
        // A path to a granted name is a different program.
        assert!(check(&grant(), &node(&["dea"]), "/tmp/cat").is_err());
        let WitError::PermissionDenied(m) = check(&grant(), &node(&["router"]), "cat").unwrap_err()
        else {
            panic!()
        };
        assert!(m.contains("exec roles: dea"), "{m}");
    }
}
