//! The plugin manifest: what a plugin says it is, what commands it offers
//! and which capabilities it asks for. It travels inside the `.wasm` file
//! as the custom section `stackhost-manifest` (TOML; see wit/MANIFEST.md)
//! and is validated once, with no plugin code running.

use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Name of the custom section that holds the manifest.
pub const SECTION: &str = "stackhost-manifest";

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not valid UTF-8")]
    NotUtf8,
    #[error("the manifest is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("the manifest is not valid: {0}")]
    Invalid(String),
}

/// A parsed, validated manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: Version,
    /// Version of the `stackhost:host` WIT package the plugin targets.
    pub wit: Version,
    pub description: String,
    /// `plugin` (world `plugin`, the default) or `patch` (world `patch`,
    /// a vendor patch driven by the `patches` capability).
    #[serde(default)]
    pub kind: Kind,
    #[serde(default, rename = "command")]
    pub commands: Vec<CommandSpec>,
    #[serde(default)]
    pub capabilities: Capabilities,
}

/// Which world a component implements.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A maintenance plugin: `stackhost run NAME COMMAND`.
    #[default]
    Plugin,
    /// A vendor patch: applied through the `patch` plugin.
    Patch,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Plugin => "plugin",
            Kind::Patch => "patch",
        }
    }
}

/// How the host prints a command's result.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Output {
    /// The run report: a line per step, then a recap per node.
    #[default]
    Report,
    /// The steps' messages as they are, for commands whose result is a
    /// document (`patch status`). The plugin is told about `--json`
    /// through an argument named `json`, and writes JSON itself then.
    Message,
}

/// One command of a plugin (`stackhost run NAME COMMAND`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub name: String,
    pub about: String,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub output: Output,
    /// The command only reads: the host runs it without the cluster lock
    /// and refuses any mutating call it makes.
    #[serde(default, rename = "read-only")]
    pub read_only: bool,
    #[serde(default, rename = "arg")]
    pub args: Vec<ArgSpec>,
}

/// One argument of a command.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArgSpec {
    pub name: String,
    #[serde(default)]
    pub help: String,
    pub kind: ArgKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub multiple: bool,
    #[serde(default)]
    pub default: Option<String>,
}

/// How an argument is written on the command line.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ArgKind {
    /// `VALUE`
    Positional,
    /// `--name VALUE`
    Option,
    /// `--name`
    Flag,
}

/// The capability requests of a plugin. `nodes` and `log` need none.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub exec: Option<ExecRequest>,
    pub fs: Option<FsRequest>,
    pub archive: Option<ArchiveRequest>,
    pub postgres: Option<PostgresRequest>,
    pub docker: Option<DockerRequest>,
    pub patches: Option<PatchesRequest>,
}

/// Use of the installed vendor patches (list, check, apply, revert).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PatchesRequest {
    pub reason: String,
}

/// Programs a plugin may run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub reason: String,
    /// Programs that may change the node.
    #[serde(default)]
    pub programs: Vec<String>,
    /// Programs that only read; they also run during `--dry-run`.
    #[serde(default, rename = "read-only")]
    pub read_only: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Environment variables a program may be given beyond the ones every
    /// exec grant allows ([`crate::caps::exec::ALWAYS_ALLOWED_ENV`]).
    /// Names that change which code a program loads are refused here.
    #[serde(default)]
    pub env: Vec<String>,
    /// Users a program may run as (through sudo on the node); without a
    /// user a program runs as the node's login user.
    #[serde(default)]
    pub users: Vec<String>,
}

impl ExecRequest {
    /// Programs, environment names and users of an exec request.
    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |m: String| Err(ManifestError::Invalid(m));
        for program in self.programs.iter().chain(&self.read_only) {
            if program.is_empty()
                || program.contains('\0')
                || (program.contains('/') && !program.starts_with('/'))
            {
                return invalid(format!(
                    "exec program `{}` must be a bare name or an absolute path",
                    program.escape_default()
                ));
            }
        }
        for name in &self.env {
            if !crate::caps::exec::is_env_name(name) {
                return invalid(format!(
                    "exec env `{}` is not a variable name (letters, digits and `_`, not starting \
                     with a digit)",
                    name.escape_default()
                ));
            }
            if let Some(why) = crate::caps::exec::env_never_allowed(name) {
                return invalid(format!(
                    "exec env `{name}` cannot be granted: {why}; pass what the program needs \
                     as arguments or in a file instead"
                ));
            }
        }
        for user in &self.users {
            if !is_user_name(user) {
                return invalid(format!(
                    "exec user `{}` is not a user name (letters, digits, `_`, `.` and `-`, \
                     not starting with `-`, at most 32 characters)",
                    user.escape_default()
                ));
            }
        }
        Ok(())
    }
}

/// A login name as Debian's `adduser` and sudo accept it, strictly:
/// `[A-Za-z_][A-Za-z0-9_.-]*`, at most 32 characters.
fn is_user_name(name: &str) -> bool {
    name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Paths a plugin may read and write on nodes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FsRequest {
    pub reason: String,
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Directories on the operator's host where artifacts may be written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    pub reason: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Databases a plugin may list, dump and restore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresRequest {
    pub reason: String,
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Docker operations a plugin may use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DockerRequest {
    pub reason: String,
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Argument names the host uses on every plugin command.
pub const RESERVED_ARGS: &[&str] = &[
    "dry-run",
    "json",
    "nodes",
    "memory-limit",
    "cpu-limit",
    "timeout",
    "exec-timeout",
    "max-in-flight",
    "serial",
    "canaries",
    "max-fail",
    "force-unlock",
    "lock-ttl",
    "inventory",
    "accept-new-host-keys",
    "connect-timeout",
    "known-hosts",
    "help",
    "version",
];

/// The Docker operations a grant can name.
pub const DOCKER_OPERATIONS: &[&str] = &["list", "build", "tag", "push", "restart"];

impl Manifest {
    /// Parse and validate manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
        let manifest: Manifest = toml::from_str(text)?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |m: String| Err(ManifestError::Invalid(m));
        check_name("plugin name", &self.name)?;
        match self.kind {
            Kind::Plugin if self.commands.is_empty() => {
                return invalid(format!("plugin `{}` declares no [[command]]", self.name));
            }
            Kind::Patch if !self.commands.is_empty() => {
                return invalid(format!(
                    "patch `{}` declares commands; a vendor patch has none (it is applied with \
                     `stackhost run patch install`)",
                    self.name
                ));
            }
            Kind::Patch if self.capabilities.patches.is_some() => {
                return invalid(format!(
                    "patch `{}` requests [capabilities.patches]; only plugins may",
                    self.name
                ));
            }
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for command in &self.commands {
            check_name("command name", &command.name)?;
            if !seen.insert(command.name.as_str()) {
                return invalid(format!("command `{}` is declared twice", command.name));
            }
            let mut args = BTreeSet::new();
            let mut trailing = false;
            for arg in &command.args {
                check_name("argument name", &arg.name)?;
                if RESERVED_ARGS.contains(&arg.name.as_str()) {
                    return invalid(format!(
                        "command `{}`: argument name `{}` is reserved for the host's own flags",
                        command.name, arg.name
                    ));
                }
                if !args.insert(arg.name.as_str()) {
                    return invalid(format!(
                        "command `{}` declares argument `{}` twice",
                        command.name, arg.name
                    ));
                }
                if arg.kind == ArgKind::Flag
                    && (arg.required || arg.default.is_some() || arg.multiple)
                {
                    return invalid(format!(
                        "flag `{}` of command `{}` cannot be required, repeated or have a default",
                        arg.name, command.name
                    ));
                }
                if arg.kind == ArgKind::Positional {
                    if trailing {
                        return invalid(format!(
                            "command `{}`: positional `{}` follows a repeated positional",
                            command.name, arg.name
                        ));
                    }
                    trailing = arg.multiple;
                }
            }
        }
        let caps = &self.capabilities;
        if self.kind == Kind::Patch
            && (caps.archive.is_some() || caps.postgres.is_some() || caps.docker.is_some())
        {
            return invalid(format!(
                "patch `{}` requests a capability the `patch` world does not import \
                 (a vendor patch may use exec and fs only)",
                self.name
            ));
        }
        if let Some(exec) = &caps.exec {
            exec.validate()?;
        }
        if let Some(fs) = &caps.fs {
            for path in fs.read.iter().chain(&fs.write) {
                check_scope_path("fs", path)?;
            }
        }
        if let Some(archive) = &caps.archive {
            for path in &archive.paths {
                check_scope_path("archive", path)?;
            }
        }
        if let Some(docker) = &caps.docker {
            for op in &docker.operations {
                if !DOCKER_OPERATIONS.contains(&op.as_str()) {
                    return invalid(format!(
                        "docker operation `{op}` is unknown (known: {})",
                        DOCKER_OPERATIONS.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The command called `name`.
    pub fn command(&self, name: &str) -> Option<&CommandSpec> {
        self.commands.iter().find(|c| c.name == name)
    }
}

/// Plugin, command and argument names: lower-case letters, digits and
/// `-`, starting with a letter, at most 64 characters.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_name(what: &str, name: &str) -> Result<(), ManifestError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ManifestError::Invalid(format!(
            "{what} `{name}` must be lower-case letters, digits and `-`, starting with a letter"
        )))
    }
}

fn check_scope_path(capability: &str, path: &str) -> Result<(), ManifestError> {
    let p = std::path::Path::new(path);
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ManifestError::Invalid(format!(
            "{capability} path `{path}` must be absolute and contain no `..`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "hello"
version = "0.1.0"
wit = "0.1.0"
description = "Say hello"

[[command]]
name = "stamp"
about = "Write a stamp"
[[command.arg]]
name = "message"
kind = "option"
default = "hi"

[capabilities.exec]
reason = "uname"
read-only = ["uname"]
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(m.name, "hello");
        assert_eq!(m.commands[0].args[0].default.as_deref(), Some("hi"));
        assert_eq!(m.capabilities.exec.unwrap().read_only, vec!["uname"]);
    }

    #[test]
    fn refuses_unknown_fields() {
        let bad = GOOD.replace("description", "colour = \"red\"\ndescription");
        let err = Manifest::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn refuses_bad_semver() {
        let bad = GOOD.replace("version = \"0.1.0\"", "version = \"1.x\"");
        let err = Manifest::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("version"), "{err}");
    }

    #[test]
    fn refuses_relative_and_dotdot_paths() {
        let bad = format!("{GOOD}\n[capabilities.fs]\nreason = \"x\"\nwrite = [\"/tmp/../etc\"]\n");
        let err = Manifest::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("must be absolute and contain no `..`"),
            "{err}"
        );
    }

    #[test]
    fn patch_kind_has_no_commands() {
        let patch = r#"
name = "fix"
version = "1.0.0"
wit = "0.1.0"
description = "A fix"
kind = "patch"
"#;
        let m = Manifest::parse(patch.as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::Patch);
        let err = Manifest::parse(
            GOOD.replace("description =", "kind = \"patch\"\ndescription =")
                .as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("a vendor patch has none"), "{err}");
    }

    #[test]
    fn every_host_flag_is_reserved() {
        use clap::CommandFactory as _;
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            flags: crate::cli::RunFlags,
        }
        for arg in Probe::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    RESERVED_ARGS.contains(&long),
                    "host flag --{long} is not in RESERVED_ARGS"
                );
            }
        }
    }

    #[test]
    fn exec_env_and_users_are_parsed_and_checked() {
        let with = |extra: &str| {
            GOOD.replace(
                "read-only = [\"uname\"]",
                &format!("read-only = [\"uname\"]\n{extra}"),
            )
        };
        let m = Manifest::parse(with("env = [\"PGDATABASE\"]\nusers = [\"postgres\"]").as_bytes())
            .unwrap();
        let exec = m.capabilities.exec.unwrap();
        assert_eq!(
            (exec.env, exec.users),
            (vec!["PGDATABASE".to_string()], vec!["postgres".to_string()])
        );
        let exec = Manifest::parse(GOOD.as_bytes())
            .unwrap()
            .capabilities
            .exec
            .unwrap();
        assert!(exec.env.is_empty() && exec.users.is_empty());
        for (extra, needle) in [
            (
                "env = [\"PATH\"]",
                "exec env `PATH` cannot be granted: the host sets PATH itself",
            ),
            (
                "env = [\"LD_PRELOAD\"]",
                "exec env `LD_PRELOAD` cannot be granted: it changes which code",
            ),
            (
                "env = [\"PERL5OPT\"]",
                "exec env `PERL5OPT` cannot be granted",
            ),
            (
                "env = [\"BASH_FUNC_x\"]",
                "exec env `BASH_FUNC_x` cannot be granted",
            ),
            (
                "env = [\"PATH=/tmp\"]",
                "exec env `PATH=/tmp` is not a variable name",
            ),
            (
                "env = [\"BASH_FUNC_ls%%\"]",
                "exec env `BASH_FUNC_ls%%` is not a variable name",
            ),
            (
                "users = [\"-oroot\"]",
                "exec user `-oroot` is not a user name",
            ),
            (
                "users = [\"root postgres\"]",
                "exec user `root postgres` is not a user name",
            ),
            ("users = [\"\"]", "exec user `` is not a user name"),
            ("shell = true", "unknown field `shell`"),
        ] {
            let err = Manifest::parse(with(extra).as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        let bad = GOOD.replace("name = \"hello\"", "name = \"Hello World\"");
        let err = Manifest::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("plugin name `Hello World`"), "{err}");
    }
}
