//! A plugin's commands as its manifest declares them (`[[command]]`): each
//! command's arguments, output, read-only and destructive marks and run
//! defaults, and the checks they pass at install.

use super::{ManifestError, check_name};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

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
    /// The command destroys or replaces data (an import over the current
    /// data, a prune, turning passwords off): the host asks the operator
    /// to confirm, or needs `--yes`, except under `--dry-run`.
    #[serde(default)]
    pub destructive: bool,
    #[serde(default, rename = "arg")]
    pub args: Vec<ArgSpec>,
    /// The command's own defaults for the host's run flags (a flag given
    /// on the command line still wins).
    #[serde(default, skip_serializing_if = "CommandDefaults::is_empty")]
    pub defaults: CommandDefaults,
}

impl CommandSpec {
    /// The checks one command passes at install: its name, its defaults,
    /// and each argument's name and shape.
    pub(super) fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |m: String| Err(ManifestError::Invalid(m));
        let command = self;
        check_name("command name", &command.name)?;
        if command.name == "help" {
            return invalid(
                "command name `help` is taken by the command line's own help, so the command \
                 could never run; name it otherwise"
                    .into(),
            );
        }
        command.defaults.validate(&command.name)?;
        if command.destructive && command.read_only {
            return invalid(format!(
                "command `{}` is declared both read-only and destructive",
                command.name
            ));
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
            if arg.secret && (arg.kind != ArgKind::Option || arg.multiple || arg.default.is_some())
            {
                return invalid(format!(
                    "secret argument `{}` of command `{}` must be an option with no default and no repetition",
                    arg.name, command.name
                ));
            }
            if arg.kind == ArgKind::Flag && (arg.required || arg.default.is_some() || arg.multiple)
            {
                return invalid(format!(
                    "flag `{}` of command `{}` cannot be required, repeated or have a default",
                    arg.name, command.name
                ));
            }
            if arg.path.is_some() && (arg.kind == ArgKind::Flag || arg.secret) {
                return invalid(format!(
                    "argument `{}` of command `{}` is a path the operator gives (`path`), so it \
                     must be a positional or an option that is not secret",
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
        Ok(())
    }
}

/// `[command.defaults]`: run flags a command sets for itself, for example
/// `serial = 1` for an upgrade that must go one node at a time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandDefaults {
    /// `--exec-timeout`, as a duration (`30m`).
    #[serde(default, rename = "exec-timeout")]
    pub exec_timeout: Option<String>,
    /// `--timeout`, as a duration (`2h`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// `--serial`: steps per batch.
    #[serde(default)]
    pub serial: Option<usize>,
}

impl CommandDefaults {
    pub fn is_empty(&self) -> bool {
        *self == CommandDefaults::default()
    }

    /// `--exec-timeout` and `--timeout` as durations (checked at install).
    pub fn durations(&self) -> (Option<std::time::Duration>, Option<std::time::Duration>) {
        let parse = |d: &Option<String>| {
            d.as_deref()
                .and_then(|t| crate::time::parse_duration(t).ok())
        };
        (parse(&self.exec_timeout), parse(&self.timeout))
    }

    /// The defaults as the flags that would give them, for `plugin info`.
    pub fn as_flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(n) = self.serial {
            out.push(format!("--serial {n}"));
        }
        if let Some(t) = &self.exec_timeout {
            out.push(format!("--exec-timeout {t}"));
        }
        if let Some(t) = &self.timeout {
            out.push(format!("--timeout {t}"));
        }
        out
    }

    fn validate(&self, command: &str) -> Result<(), ManifestError> {
        for (flag, value) in [
            ("exec-timeout", &self.exec_timeout),
            ("timeout", &self.timeout),
        ] {
            if let Some(v) = value {
                let d = crate::time::parse_duration(v).map_err(|e| {
                    ManifestError::Invalid(format!("command `{command}`: defaults.{flag}: {e}"))
                })?;
                if d.is_zero() {
                    return Err(ManifestError::Invalid(format!(
                        "command `{command}`: defaults.{flag} must be more than zero"
                    )));
                }
            }
        }
        if self.serial == Some(0) {
            return Err(ManifestError::Invalid(format!(
                "command `{command}`: defaults.serial must be at least 1"
            )));
        }
        Ok(())
    }
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
    /// A secret (a license key, a password): an option given as
    /// `--NAME-file FILE`, through `STACKHOST_SECRET_NAME` or at a hidden
    /// prompt, never in argv; shown as `***` in everything the run
    /// reports or journals.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// A path the operator gives (`relocate services DEST`), which the
    /// plugin may read (`read`) or read and write (`write`) for that run:
    /// the run's fs grant holds it beside the manifest's paths, and the
    /// install prompt says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<GivenPath>,
}

/// What a plugin may do with a path the operator gives.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum GivenPath {
    Read,
    Write,
}

impl ArgSpec {
    /// The environment variable a secret argument is read from.
    pub fn secret_env(&self) -> String {
        format!(
            "STACKHOST_SECRET_{}",
            self.name.to_uppercase().replace('-', "_")
        )
    }
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

/// Argument names the host uses on every plugin command.
pub const RESERVED_ARGS: &[&str] = &[
    "dry-run",
    "json",
    "verbose",
    "quiet",
    "timing",
    "yes",
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
    "max-handshakes",
    "known-hosts",
    "help",
    "version",
];
