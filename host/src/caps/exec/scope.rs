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

/// Environment variables every exec grant allows: locale, time zone,
/// Debian's frontend and the proxy settings, in both spellings.
pub const ALWAYS_ALLOWED_ENV: &[&str] = &[
    "LANG",
    "LC_*",
    "TZ",
    "DEBIAN_FRONTEND",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// A POSIX environment variable name: `[A-Za-z_][A-Za-z0-9_]*`. Anything
/// else (`=`, spaces, NUL) could smuggle a second assignment into the
/// program's environment.
pub fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why `name` may never be granted, if it changes which code a program
/// loads or runs (the dynamic loader, shells, interpreters, tools that take
/// options or commands from the environment).
pub fn env_never_allowed(name: &str) -> Option<&'static str> {
    const EXACT: &[&str] = &[
        "PATH",
        "ENV",
        "BASH_ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCPATH",
        "NLSPATH",
        "TAR_OPTIONS",
        "CLASSPATH",
        "PHPRC",
        "PHP_INI_SCAN_DIR",
        "TCLLIBPATH",
        "PAGER",
        "EDITOR",
        "VISUAL",
        "LESSOPEN",
        "LESSCLOSE",
        "SSH_ASKPASS",
        "SUDO_ASKPASS",
        "HOME",
        "SHELL",
    ];
    const PREFIXES: &[&str] = &[
        "LD_",
        "DYLD_",
        "BASH_FUNC_",
        "PYTHON",
        "PERL",
        "RUBY",
        "GEM_",
        "NODE_",
        "JAVA_",
        "_JAVA_",
        "JDK_JAVA_",
        "LUA_",
        "GIT_",
        "MALLOC_",
        "XDG_",
    ];
    if EXACT.contains(&name) {
        return Some(if name == "PATH" {
            "the host sets PATH itself, so a plugin cannot pick which program a name runs"
        } else {
            "it changes which code a program loads or runs"
        });
    }
    if PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Some("it changes which code a program loads or runs");
    }
    None
}

/// Whether `name` is one of [`ALWAYS_ALLOWED_ENV`] (`LC_*` by prefix).
fn always_allowed(name: &str) -> bool {
    ALWAYS_ALLOWED_ENV
        .iter()
        .any(|a| match a.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix) && name.len() > prefix.len(),
            None => *a == name,
        })
}

/// Check a program's environment against the grant: every name must be
/// well formed and allowed (always, or by the grant's `env`), and no name
/// or value may hold a NUL byte.
pub fn check_env(grant: &Grant, env: &[(String, String)]) -> Result<(), WitError> {
    let granted: &[String] = grant
        .capabilities
        .exec
        .as_ref()
        .map_or(&[], |e| e.env.as_slice());
    for (name, value) in env {
        if !is_env_name(name) {
            return Err(WitError::InvalidArgument(format!(
                "environment variable name `{}` is not valid for exec: a name is letters, digits \
                 and `_`, not starting with a digit",
                name.escape_default()
            )));
        }
        if value.contains('\0') {
            return Err(WitError::InvalidArgument(format!(
                "the value of environment variable `{name}` contains a NUL byte"
            )));
        }
        // Refused even when a grant from before this rule lists it.
        if let Some(why) = env_never_allowed(name) {
            return Err(WitError::PermissionDenied(format!(
                "environment variable `{name}` is not allowed for exec ({why})"
            )));
        }
        if !always_allowed(name) && !granted.iter().any(|g| g == name) {
            return Err(WitError::PermissionDenied(format!(
                "environment variable `{name}` is not in the exec grant (exec env: {}; always \
                 allowed: {})",
                list(granted),
                ALWAYS_ALLOWED_ENV.join(", ")
            )));
        }
    }
    Ok(())
}

/// Check the user a program asks to run as: it must be one the grant lists.
/// No user means the node's login user (or the host's own user locally).
pub fn check_user(grant: &Grant, node: &NodeInfo, user: Option<&str>) -> Result<(), WitError> {
    let Some(user) = user else { return Ok(()) };
    let granted: &[String] = grant
        .capabilities
        .exec
        .as_ref()
        .map_or(&[], |e| e.users.as_slice());
    if granted.iter().any(|g| g == user) {
        return Ok(());
    }
    Err(WitError::PermissionDenied(format!(
        "exec as user `{}` on node {} is outside the grant (exec users: {})",
        user.escape_default(),
        node.name,
        list(granted)
    )))
}

/// Refuse NUL bytes in the program, its arguments and its working
/// directory: they cannot be passed to a program, and over SSH they would
/// end the command line early.
pub fn check_words(program: &str, args: &[String], cwd: Option<&str>) -> Result<(), WitError> {
    let bad = if program.contains('\0') {
        Some("the program name".to_string())
    } else if let Some(i) = args.iter().position(|a| a.contains('\0')) {
        Some(format!("argument {}", i + 1))
    } else if cwd.is_some_and(|c| c.contains('\0')) {
        Some("the working directory".to_string())
    } else {
        None
    };
    match bad {
        Some(what) => Err(WitError::InvalidArgument(format!(
            "{what} of `{}` contains a NUL byte",
            program.escape_default()
        ))),
        None => Ok(()),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
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
                    env: vec!["PGDATABASE".into(), "PATH".into()],
                    users: vec!["postgres".into()],
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

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn denied(r: Result<(), WitError>) -> String {
        match r {
            Err(WitError::PermissionDenied(m)) => m,
            other => panic!("expected permission-denied, got {other:?}"),
        }
    }

    fn invalid(r: Result<(), WitError>) -> String {
        match r {
            Err(WitError::InvalidArgument(m)) => m,
            other => panic!("expected invalid-argument, got {other:?}"),
        }
    }

    #[test]
    fn env_is_an_allowlist() {
        let g = grant();
        check_env(
            &g,
            &env(&[
                ("LANG", "C.UTF-8"),
                ("LC_ALL", "C"),
                ("TZ", "UTC"),
                ("DEBIAN_FRONTEND", "noninteractive"),
                ("https_proxy", "http://proxy:3128"),
                ("NO_PROXY", "localhost"),
                ("PGDATABASE", "aok"),
            ]),
        )
        .unwrap();
        for name in [
            "GCONV_PATH",
            "PERL5OPT",
            "NODE_OPTIONS",
            "TAR_OPTIONS",
            "LD_PRELOAD",
            "PYTHONPATH",
            "FOO",
            "LC_",
        ] {
            let m = denied(check_env(&g, &env(&[(name, "x")])));
            assert!(m.contains(&format!("`{name}` is not")), "{m}");
        }
        let m = denied(check_env(&g, &env(&[("FOO", "x")])));
        assert!(
            m.contains("`FOO` is not in the exec grant (exec env: PGDATABASE, PATH; always allowed: LANG, LC_*"),
            "{m}"
        );
        // Listed in an old grant, still refused.
        let m = denied(check_env(&g, &env(&[("PATH", "/tmp")])));
        assert!(
            m.contains("`PATH` is not allowed for exec (the host sets PATH itself"),
            "{m}"
        );
    }

    #[test]
    fn env_names_and_values_are_checked_strictly() {
        let g = grant();
        for name in [
            "LANG=C PATH",
            "PATH=/tmp",
            "BASH_FUNC_ls%%",
            "1X",
            "",
            "A B",
            "A\0B",
        ] {
            let m = invalid(check_env(&g, &env(&[(name, "x")])));
            assert!(m.contains("is not valid for exec"), "{name}: {m}");
        }
        let m = invalid(check_env(&g, &env(&[("LANG", "C\0PATH=/tmp")])));
        assert!(m.contains("`LANG` contains a NUL byte"), "{m}");
        assert!(is_env_name("_A1") && !is_env_name("A-B"));
    }

    #[test]
    fn users_must_be_granted() {
        let g = grant();
        let n = node(&["dea"]);
        check_user(&g, &n, None).unwrap();
        check_user(&g, &n, Some("postgres")).unwrap();
        let m = denied(check_user(&g, &n, Some("root")));
        assert!(
            m.contains("exec as user `root` on node n is outside the grant (exec users: postgres)"),
            "{m}"
        );
        let mut g = grant();
        g.capabilities.exec.as_mut().unwrap().users.clear();
        let m = denied(check_user(&g, &n, Some("postgres")));
        assert!(m.contains("(exec users: none)"), "{m}");
    }

    #[test]
    fn nul_bytes_are_refused_in_every_word() {
        check_words("cat", &["a".into()], Some("/tmp")).unwrap();
        let m = invalid(check_words("cat", &["a".into(), "b\0c".into()], None));
        assert!(m.contains("argument 2 of `cat` contains a NUL byte"), "{m}");
        let m = invalid(check_words("ca\0t", &[], None));
        assert!(m.contains("the program name"), "{m}");
        let m = invalid(check_words("cat", &[], Some("/t\0mp")));
        assert!(m.contains("the working directory of `cat`"), "{m}");
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
