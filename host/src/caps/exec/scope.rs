//! The exec grant check: the call must start with a granted pattern (a
//! program, by the exact name or absolute path the plugin uses, or a
//! program with leading arguments), the longest matching pattern decides
//! whether the call is read-only or mutating, and the node must hold a
//! granted role.

use super::Exec;
use super::pattern::{PathAccess, Pending};
use crate::caps::bindings::WitError;
use crate::caps::registry::Capabilities;
use crate::caps::roles_allow;
use crate::cluster::NodeInfo;
use crate::cluster::{Cluster, Node};
use crate::text::escape_line;
use crate::text::floor_char_boundary;
use crate::text::shell_quote;

/// How a permitted program may be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramAccess {
    /// Only reads: runs during `--dry-run` too.
    ReadOnly,
    /// May change the node: recorded, not run, during `--dry-run`.
    Mutating,
}

/// How much of a refused call a denial quotes: enough to recognise it,
/// not a plugin-sized argument list.
const DENIED_CALL_CAP: usize = 200;

/// How much of the granted pattern list a denial shows.
const DENIED_GRANTS_CAP: usize = 1024;

/// Check a call of `program` with `args` against the exec grant. Of the
/// patterns the call starts with, the longest decides: a grant of
/// `btrfs` (mutating) with `btrfs qgroup show` (read-only) makes `btrfs
/// qgroup show /mnt` read-only and `btrfs subvolume delete` mutating. Two
/// equally long matches can only come from a grant recorded before
/// install refused duplicates; mutating wins then (under `--dry-run` it is
/// recorded, not run).
pub fn check(
    grant: &Capabilities,
    node: &NodeInfo,
    program: &str,
    args: &[String],
) -> Result<ProgramAccess, WitError> {
    let Some(exec) = grant.get::<Exec>() else {
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
    let mut best: Option<(usize, ProgramAccess)> = None;
    for (pattern, read_only) in exec.patterns() {
        if !pattern.matches(program, args) {
            continue;
        }
        let len = pattern.words().len();
        let access = if read_only {
            ProgramAccess::ReadOnly
        } else {
            ProgramAccess::Mutating
        };
        match best {
            Some((l, _)) if l > len => {}
            Some((l, ProgramAccess::Mutating)) if l == len => {}
            _ => best = Some((len, access)),
        }
    }
    if let Some((_, access)) = best {
        return Ok(access);
    }
    let mut grants = String::new();
    let patterns: Vec<(String, bool)> = exec
        .run
        .iter()
        .map(|r| {
            let user = r
                .user
                .as_ref()
                .map_or(String::new(), |u| format!(" as {u}"));
            (format!("{}{user}", r.argv), r.read_only)
        })
        .chain(
            exec.patterns()
                .map(|(p, read_only)| (format!("{p} {{args...}}"), read_only)),
        )
        .collect();
    for (i, (pattern, read_only)) in patterns.iter().enumerate() {
        if grants.len() >= DENIED_GRANTS_CAP {
            grants.push_str(&format!(", … ({} more)", patterns.len() - i));
            break;
        }
        if !grants.is_empty() {
            grants.push_str(", ");
        }
        grants.push_str(&escape_line(pattern));
        if *read_only {
            grants.push_str(" (read-only)");
        }
    }
    Err(WitError::PermissionDenied(format!(
        "`{}` is not in the exec grant: no granted pattern matches it, argument for argument \
         and as that user (exec grants: {})",
        quoted_call(program, args, DENIED_CALL_CAP),
        if grants.is_empty() { "none" } else { &grants }
    )))
}

/// A call the grant allows: how it may run, and the arguments to run it
/// with (path holes replaced by where each path really is).
#[derive(Debug)]
pub struct Allowed {
    pub access: ProgramAccess,
    pub args: Vec<String>,
}

/// Check a call against the grant's exact patterns
/// (`[[capabilities.exec.run]]`), then against its argv prefixes. An exact
/// pattern matches when the program, the number of arguments, every
/// literal and every hole agree and the user is the one it names; its
/// path holes are then resolved on the node, inside the fs grant. Of the
/// patterns that match, a mutating one wins (under `--dry-run` the call is
/// recorded, not run).
pub async fn check_call(
    grant: &Capabilities,
    cluster: &Cluster,
    node: &Node,
    program: &str,
    args: &[String],
    user: Option<&str>,
) -> Result<Allowed, WitError> {
    let exec = grant.get::<Exec>();
    let mut refused: Option<WitError> = None;
    if let Some(exec) = exec
        && !exec.run.is_empty()
        && roles_allow(&exec.roles, &node.info.roles)
    {
        let mut entries: Vec<_> = exec
            .run
            .iter()
            .filter(|e| e.user.as_deref() == user)
            .collect();
        entries.sort_by_key(|e| e.read_only);
        for entry in entries {
            let Some(pending) = entry.argv.matches(program, args) else {
                continue;
            };
            match settle(grant, cluster, node, args, pending).await {
                Ok(args) => {
                    let access = if entry.read_only {
                        ProgramAccess::ReadOnly
                    } else {
                        ProgramAccess::Mutating
                    };
                    return Ok(Allowed { access, args });
                }
                Err(e) => {
                    refused.get_or_insert(WitError::PermissionDenied(format!(
                        "`{}` matches the exec grant `{}`, but {}",
                        quoted_call(program, args, DENIED_CALL_CAP),
                        escape_line(&entry.argv.to_string()),
                        crate::caps::describe_error(&e)
                    )));
                }
            }
        }
    }
    let prefix = exec.is_some_and(|e| !e.programs.is_empty() || !e.read_only.is_empty());
    if !prefix && let Some(e) = refused {
        return Err(e);
    }
    match check(grant, &node.info, program, args) {
        Ok(access) => {
            check_user(grant, &node.info, user)?;
            Ok(Allowed {
                access,
                args: args.to_vec(),
            })
        }
        Err(e) => Err(refused.unwrap_or(e)),
    }
}

/// Make the checks a matched pattern leaves to the node and the inventory;
/// the arguments to run with.
async fn settle(
    grant: &Capabilities,
    cluster: &Cluster,
    node: &Node,
    args: &[String],
    pending: Vec<Pending>,
) -> Result<Vec<String>, WitError> {
    let mut out = args.to_vec();
    for p in pending {
        match p {
            Pending::Node { value, .. } => {
                if !cluster.inventory().iter().any(|n| n.name == value) {
                    return Err(WitError::PermissionDenied(format!(
                        "`{value}` is not a node of the inventory"
                    )));
                }
            }
            Pending::Role { value, .. } => {
                if !cluster.inventory().iter().any(|n| n.roles.contains(&value)) {
                    return Err(WitError::PermissionDenied(format!(
                        "no node of the inventory holds the role `{value}`"
                    )));
                }
            }
            Pending::Path {
                index,
                literal,
                value,
                access,
            } => {
                let resolved = resolve_path(grant, node, &value, access).await?;
                out[index - 1] = format!("{literal}{resolved}");
            }
            Pending::Mount { value, .. } => {
                let mounts = grant_mounts(grant, node).await?;
                let want = match value.trim_end_matches('/') {
                    "" => "/",
                    v => v,
                };
                if !mounts.iter().any(|m| m == want) {
                    return Err(WitError::PermissionDenied(format!(
                        "`{}` is not the mount point of a filesystem holding a path of the fs \
                         grant on node {} (those are: {})",
                        escape_line(&value),
                        node.info.name,
                        escape_line(&mounts.join(", "))
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// The mount points, on `node`, of the filesystems holding the fs grant's
/// paths: the mount each path lies on, and those mounted beneath it (each
/// path resolved on the node; one that does not exist is skipped).
async fn grant_mounts(grant: &Capabilities, node: &Node) -> Result<Vec<String>, WitError> {
    use crate::caps::fs::Fs;
    let Some(fs) = grant.get::<Fs>() else {
        return Ok(Vec::new());
    };
    let req = crate::cluster::ExecRequest {
        program: "cat".into(),
        pinned: None,
        args: vec!["/proc/self/mountinfo".into()],
        env: Vec::new(),
        stdin: None,
        user: None,
        cwd: None,
        timeout: std::time::Duration::from_secs(30),
        live: None,
    };
    let out = node.transport.exec(&req).await.map_err(WitError::from)?;
    if out.status != 0 {
        return Err(WitError::Io(format!(
            "cannot read the mount table of node {}",
            node.info.name
        )));
    }
    let table = mount_points(&String::from_utf8_lossy(&out.stdout));
    let mut found: Vec<String> = Vec::new();
    for root in fs.read.iter().chain(&fs.write) {
        let Ok(real) = resolve_path(grant, node, root, PathAccess::Read).await else {
            continue;
        };
        let below = table
            .iter()
            .filter(|m| is_below(m, &real))
            .map(String::as_str);
        for m in mount_of(&table, &real).into_iter().chain(below) {
            if !found.iter().any(|f| f == m) {
                found.push(m.to_string());
            }
        }
    }
    Ok(found)
}

/// Whether `path` is `dir` or lies beneath it (component by component:
/// `/mnt2` is not below `/mnt`).
fn is_below(path: &str, dir: &str) -> bool {
    std::path::Path::new(path).starts_with(dir)
}

/// The mount points of `/proc/self/mountinfo` (its fifth field, with the
/// kernel's octal escapes undone).
fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_octal)
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount `path` lies on: the longest mount point that is `path` or
/// one of its parents.
fn mount_of<'a>(table: &'a [String], path: &str) -> Option<&'a str> {
    table
        .iter()
        .filter(|m| is_below(path, m))
        .max_by_key(|m| m.len())
        .map(String::as_str)
}

/// Where a path hole's value really is on the node: inside the fs read
/// (or, for `{path:write}`, write) grant after every symlink, else refused.
/// A trailing `/` is kept (rsync and others read it).
async fn resolve_path(
    grant: &Capabilities,
    node: &Node,
    value: &str,
    access: PathAccess,
) -> Result<String, WitError> {
    use crate::caps::fs::scope::{self as fs_scope, Access};
    use crate::cluster::files::Input;
    use crate::sandbox::wire::{Reply, Request};
    let fs_access = match access {
        PathAccess::Read => Access::Read,
        PathAccess::Write => Access::Write,
    };
    let checked = fs_scope::check(grant, node, value, fs_access).await?;
    let what = format!("exec path `{}`", escape_line(value));
    let reply = node
        .files(
            &what,
            Request::Resolve {
                at: checked.loc,
                may_be_missing: access == PathAccess::Write,
            },
            Input::None,
            None,
        )
        .await?
        .0;
    let Reply::Path(real) = reply else {
        return Err(WitError::Io(format!("{what}: the node answered {reply:?}")));
    };
    let Some(real) = real.to_str() else {
        return Err(WitError::InvalidArgument(format!(
            "{what} resolves to a path that is not UTF-8"
        )));
    };
    // The resolved path must still be in the grant as the manifest names
    // it: a root is pinned where it pointed when first used, and a path
    // through a link inside it must not land in another root's place.
    fs_scope::check(grant, node, real, fs_access).await?;
    if real.chars().any(char::is_control) {
        return Err(WitError::PermissionDenied(format!(
            "{what} resolves to a path with a control character"
        )));
    }
    let mut real = real.to_string();
    if value.ends_with('/') && !real.ends_with('/') {
        real.push('/');
    }
    Ok(real)
}

/// Whether the grant lets the plugin reboot `node` (`reboot = true` in the
/// exec grant, within its roles).
pub fn check_reboot(grant: &Capabilities, node: &NodeInfo) -> Result<(), WitError> {
    let exec = grant.get::<Exec>().filter(|e| e.reboot);
    let Some(exec) = exec else {
        return Err(WitError::PermissionDenied(format!(
            "rebooting node {} is outside the grant (it needs `reboot = true` in the exec grant)",
            node.name
        )));
    };
    if !roles_allow(&exec.roles, &node.roles) {
        return Err(WitError::PermissionDenied(format!(
            "rebooting node {} is outside the grant (exec roles: {})",
            node.name,
            exec.roles.join(", ")
        )));
    }
    Ok(())
}

/// A call as shell-quoted words, cut near `cap` bytes without quoting (or
/// even reading) the rest of a huge argument list: each word is cut at
/// `cap`, and words stop once the line reaches `cap`.
pub fn quoted_call(program: &str, args: &[String], cap: usize) -> String {
    let mut line = String::new();
    let words: Vec<&str> = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .collect();
    for (i, word) in words.iter().enumerate() {
        if line.len() >= cap {
            line.push_str(&format!(" … ({} more words)", words.len() - i));
            break;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        let cut = floor_char_boundary(word, cap);
        line.push_str(&shell_quote(&word[..cut]));
        if cut < word.len() {
            line.push_str(&format!("…({} more bytes)", word.len() - cut));
        }
    }
    line
}

/// Whether granting `program` whole (with any arguments) amounts to root
/// on the node: shells and interpreters run any code they are given, and
/// the others run a program or write any file their arguments name (a
/// container runtime, a package manager, a service manager, a file copier,
/// an editor). Compared by the program's file name, so `/usr/bin/docker`
/// counts too. The list is what an operator is likely to be asked for,
/// not every such program; a pattern with leading arguments is not
/// judged here.
// Long because it is a table of program names.
pub fn root_equivalent(program: &str) -> bool {
    const EXACT: &[&str] = &[
        // Shells, interpreters and programs that run another program.
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "mksh",
        "csh",
        "tcsh",
        "fish",
        "busybox",
        "perl",
        "ruby",
        "node",
        "nodejs",
        "php",
        "lua",
        "tclsh",
        "wish",
        "expect",
        "env",
        "sudo",
        "su",
        "doas",
        "pkexec",
        "runuser",
        "setpriv",
        "chroot",
        "nsenter",
        "unshare",
        "nohup",
        "nice",
        "ionice",
        "timeout",
        "setsid",
        "stdbuf",
        "chrt",
        "taskset",
        "flock",
        "watch",
        "xargs",
        "parallel",
        "strace",
        "gdb",
        "make",
        "ssh",
        "script",
        "at",
        "batch",
        "crontab",
        "systemd-run",
        "start-stop-daemon",
        // Containers, packages, services, mounts.
        "docker",
        "dockerd",
        "podman",
        "ctr",
        "runc",
        "kubectl",
        "apt",
        "apt-get",
        "aptitude",
        "dpkg",
        "pip",
        "pip3",
        "gem",
        "npm",
        "systemctl",
        "mount",
        "umount",
        "modprobe",
        "insmod",
        "sysctl",
        // Programs that write, move or change any file.
        "find",
        "tar",
        "cpio",
        "cp",
        "mv",
        "dd",
        "rsync",
        "scp",
        "install",
        "ln",
        "rm",
        "rmdir",
        "chmod",
        "chown",
        "chgrp",
        "chattr",
        "setfacl",
        "tee",
        "truncate",
        "shred",
        "patch",
        "git",
        "zip",
        "unzip",
        "curl",
        "wget",
        "awk",
        "gawk",
        "mawk",
        "nawk",
        "sed",
        "vi",
        "vim",
        "nvim",
        "nano",
        "ed",
        "ex",
        "emacs",
        "less",
        "more",
        "man",
        "useradd",
        "usermod",
        "passwd",
        "chpasswd",
        "visudo",
        "openssl",
    ];
    // Every version of an interpreter: python3, python3.11, perl5.36, ...
    const PREFIXES: &[&str] = &["python", "perl", "ruby", "php", "lua", "node"];
    let name = program.rsplit('/').next().unwrap_or(program);
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
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
pub fn check_env(grant: &Capabilities, env: &[(String, String)]) -> Result<(), WitError> {
    let granted: &[String] = grant.get::<Exec>().map_or(&[], |e| e.env.as_slice());
    for (name, value) in env {
        if !crate::cluster::is_env_name(name) {
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
pub fn check_user(
    grant: &Capabilities,
    node: &NodeInfo,
    user: Option<&str>,
) -> Result<(), WitError> {
    let Some(user) = user else { return Ok(()) };
    let granted: &[String] = grant.get::<Exec>().map_or(&[], |e| e.users.as_slice());
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
    use crate::caps::exec::{ExecGrant, ExecPattern};
    use crate::cluster::is_env_name;

    fn whole(p: &str) -> ExecPattern {
        ExecPattern::Program(p.into())
    }

    fn prefix(words: &[&str]) -> ExecPattern {
        ExecPattern::Prefix(words.iter().map(|w| w.to_string()).collect())
    }

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn grant() -> Capabilities {
        Capabilities::default().with::<Exec>(ExecGrant {
            reason: "t".into(),
            programs: vec![whole("touch")],
            read_only: vec![whole("cat")],
            roles: vec!["dea".into()],
            env: vec!["PGDATABASE".into(), "PATH".into()],
            users: vec!["postgres".into()],
            reboot: true,
            run: vec![],
        })
    }

    fn node(roles: &[&str]) -> NodeInfo {
        NodeInfo {
            name: "n".into(),
            hostname: None,
            port: 22,
            user: "root".into(),
            address: "".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            is_local: true,
            http_proxy: None,
            https_proxy: None,
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
    fn reboot_needs_the_flag_and_the_roles() {
        check_reboot(&grant(), &node(&["dea"])).unwrap();
        let m = denied(check_reboot(&grant(), &node(&["router"])));
        assert!(m.contains("exec roles: dea"), "{m}");
        let mut g = grant();
        g.get_mut::<Exec>().as_mut().unwrap().reboot = false;
        let m = denied(check_reboot(&g, &node(&["dea"])));
        assert!(m.contains("needs `reboot = true`"), "{m}");
        let none = Capabilities::default();
        assert!(denied(check_reboot(&none, &node(&["dea"]))).contains("reboot = true"));
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
        g.get_mut::<Exec>().as_mut().unwrap().users.clear();
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
        let n = node(&["dea"]);
        assert_eq!(
            check(&grant(), &n, "cat", &args(&["/etc/hostname"])).unwrap(),
            ProgramAccess::ReadOnly
        );
        assert_eq!(
            check(&grant(), &n, "touch", &[]).unwrap(),
            ProgramAccess::Mutating
        );
        let WitError::PermissionDenied(m) =
            check(&grant(), &n, "rm", &args(&["-rf", "/srv/a b"])).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(
            m,
            "`rm -rf '/srv/a b'` is not in the exec grant: no granted pattern matches it, \
             argument for argument and as that user (exec grants: touch {args...}, \
             cat {args...} (read-only))"
        );
        // A path to a granted name is a different program.
        assert!(check(&grant(), &n, "/tmp/cat", &[]).is_err());
        let WitError::PermissionDenied(m) =
            check(&grant(), &node(&["router"]), "cat", &[]).unwrap_err()
        else {
            panic!()
        };
        assert!(m.contains("exec roles: dea"), "{m}");
    }

    fn prefixes() -> Capabilities {
        let mut g = grant();
        let exec = g.get_mut::<Exec>().as_mut().unwrap();
        exec.programs = vec![whole("btrfs"), prefix(&["systemctl", "restart", "cron"])];
        exec.read_only = vec![
            prefix(&["btrfs", "qgroup", "show"]),
            prefix(&["systemctl", "is-active"]),
            prefix(&["btrfs", "filesystem", "df"]),
        ];
        g
    }

    #[test]
    fn the_longest_matching_prefix_decides() {
        let g = prefixes();
        let n = node(&["dea"]);
        let access = |program: &str, words: &[&str]| check(&g, &n, program, &args(words));
        use ProgramAccess::*;
        assert_eq!(
            access("btrfs", &["qgroup", "show", "/mnt"]).unwrap(),
            ReadOnly
        );
        assert_eq!(access("btrfs", &["qgroup", "show"]).unwrap(), ReadOnly);
        assert_eq!(
            access("btrfs", &["filesystem", "df", "/"]).unwrap(),
            ReadOnly
        );
        // Shorter than the read-only prefix, or different: the whole grant.
        assert_eq!(access("btrfs", &["qgroup"]).unwrap(), Mutating);
        assert_eq!(
            access("btrfs", &["qgroup", "limit", "1G"]).unwrap(),
            Mutating
        );
        assert_eq!(access("btrfs", &[]).unwrap(), Mutating);
        assert_eq!(
            access("systemctl", &["is-active", "cron"]).unwrap(),
            ReadOnly
        );
        assert_eq!(access("systemctl", &["restart", "cron"]).unwrap(), Mutating);
        // Compared exactly: no prefix of a word, no option spelled differently.
        for words in [
            &["restart", "cronx"][..],
            &["restart"],
            &["--now", "restart", "cron"],
            &["is-activ"],
            &["Is-active"],
            &[],
        ] {
            let Err(WitError::PermissionDenied(m)) = access("systemctl", words) else {
                panic!("{words:?} was allowed")
            };
            assert!(m.contains("is not in the exec grant"), "{m}");
        }
        let Err(WitError::PermissionDenied(m)) = access("systemctl", &["stop", "cron"]) else {
            panic!()
        };
        assert_eq!(
            m,
            "`systemctl stop cron` is not in the exec grant: no granted pattern matches it, \
             argument for argument and as that user (exec grants: btrfs {args...}, \
             systemctl restart cron {args...}, btrfs qgroup show {args...} (read-only), \
             systemctl is-active {args...} (read-only), btrfs filesystem df {args...} \
             (read-only))"
        );
    }

    #[test]
    fn an_old_grant_listing_a_program_twice_is_mutating() {
        let mut g = grant();
        g.get_mut::<Exec>().as_mut().unwrap().read_only = vec![whole("touch")];
        assert_eq!(
            check(&g, &node(&["dea"]), "touch", &[]).unwrap(),
            ProgramAccess::Mutating
        );
    }

    #[test]
    fn a_denial_quotes_and_caps_the_call() {
        let mut g = grant();
        g.get_mut::<Exec>().as_mut().unwrap().read_only =
            (0..500).map(|i| whole(&format!("prog{i}"))).collect();
        let huge = vec!["x".repeat(1000); 10_000];
        let Err(WitError::PermissionDenied(m)) = check(&g, &node(&["dea"]), "rm", &huge) else {
            panic!()
        };
        assert!(m.len() < 2000, "{}", m.len());
        assert!(m.starts_with("`rm xxx"), "{m}");
        assert!(m.contains("…(800 more bytes) … (9999 more words)`"), "{m}");
        assert!(
            m.contains("prog0 {args...} (read-only), prog1 {args...} (read-only)"),
            "{m}"
        );
        assert!(m.ends_with(" more))"), "{m}");
        assert_eq!(
            quoted_call("echo", &args(&["it's", "", "a;b"]), 100),
            r#"echo 'it'\''s' '' 'a;b'"#
        );
    }

    #[test]
    fn the_mount_of_a_path_is_its_longest_mount_point() {
        let info = "22 1 0:21 / / rw - btrfs /dev/sda rw\n\
                    23 22 0:22 / /mnt/e\\040b rw - ext4 /dev/sdb rw\n\
                    24 22 0:23 / /mnt rw - tmpfs t rw\n";
        let table = mount_points(info);
        assert_eq!(table, ["/", "/mnt/e b", "/mnt"]);
        assert_eq!(mount_of(&table, "/mnt/e b/x"), Some("/mnt/e b"));
        assert_eq!(mount_of(&table, "/mnt/eb"), Some("/mnt"));
        assert_eq!(mount_of(&table, "/var/stackato"), Some("/"));
        assert_eq!(mount_of(&table, "/mnt"), Some("/mnt"));
        assert!(is_below("/mnt/e b", "/mnt") && is_below("/mnt", "/"));
        assert!(!is_below("/mnt2", "/mnt") && !is_below("/", "/mnt"));
    }

    #[test]
    fn whole_programs_that_amount_to_root() {
        for p in [
            "sh",
            "bash",
            "/bin/bash",
            "python3",
            "python3.11",
            "perl",
            "docker",
            "apt-get",
            "systemctl",
            "find",
            "tar",
            "cp",
            "dd",
            "tee",
            "install",
            "sed",
            "awk",
            "vi",
            "env",
            "sudo",
            "busybox",
            "xargs",
            "rsync",
            "mount",
            "chmod",
            "chown",
            "ln",
            "rm",
            "mv",
        ] {
            assert!(root_equivalent(p), "{p}");
        }
        for p in [
            "uname", "date", "ls", "cat", "touch", "echo", "btrfs", "id", "true",
        ] {
            assert!(!root_equivalent(p), "{p}");
        }
    }
}
