//! The plugin manifest: what a plugin says it is, what commands it offers
//! and which capabilities it asks for. It travels inside the `.wasm` file
//! as the custom section `stackhost-manifest` (TOML; see wit/MANIFEST.md)
//! and is validated once, with no plugin code running.

use crate::caps::interface::World;
use crate::caps::registry::Capabilities;
use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

mod command;

pub use command::{
    ArgKind, ArgSpec, CommandDefaults, CommandSpec, GivenPath, Output, RESERVED_ARGS,
};

/// Name of the custom section that holds the manifest.
pub const SECTION: &str = "stackhost-manifest";

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
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
    /// The WIT world a component of this kind implements.
    pub fn world(self) -> World {
        match self {
            Kind::Plugin => World::Plugin,
            Kind::Patch => World::Patch,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Plugin => "plugin",
            Kind::Patch => "patch",
        }
    }
}

impl Manifest {
    /// Parse and validate manifest bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let text =
            std::str::from_utf8(bytes).map_err(|e| ManifestError::NotUtf8(e.valid_up_to()))?;
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
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for command in &self.commands {
            command.validate()?;
            if !seen.insert(command.name.as_str()) {
                return invalid(format!("command `{}` is declared twice", command.name));
            }
        }
        self.capabilities
            .validate(&self.name, self.kind.world())
            .map_err(ManifestError::Invalid)?;
        self.path_holes_can_match()
    }

    /// An exec pattern's path hole (`{path:read}`, `{path:write}`,
    /// `{mount}`) resolves inside the fs grant and the paths the operator
    /// gives: without those it could never match.
    fn path_holes_can_match(&self) -> Result<(), ManifestError> {
        use crate::caps::exec::Exec;
        use crate::caps::exec::pattern::{Hole, PathAccess};
        use crate::caps::fs::Fs;
        let Some(exec) = self.capabilities.get::<Exec>() else {
            return Ok(());
        };
        let fs = self.capabilities.get::<Fs>();
        let given = |access: GivenPath| {
            self.commands
                .iter()
                .flat_map(|c| &c.args)
                .any(|a| a.path == Some(access))
        };
        let writes = fs.is_some_and(|f| !f.write.is_empty() || given(GivenPath::Write));
        let reads = writes || fs.is_some_and(|f| !f.read.is_empty() || given(GivenPath::Read));
        for entry in &exec.run {
            let argv = &entry.argv;
            let why = if argv.has_hole(|h| *h == Hole::Path(PathAccess::Write)) && !writes {
                "writes no path"
            } else if argv.has_hole(|h| matches!(h, Hole::Path(_) | Hole::Mount)) && !reads {
                "reads no path"
            } else {
                continue;
            };
            return Err(ManifestError::Invalid(format!(
                "exec run `{}` can never match: its path hole must resolve inside the fs grant, \
                 which {why}; add the paths to [capabilities.fs] (or a command argument with \
                 `path`), or drop the entry",
                crate::text::escape_line(&argv.to_string())
            )));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::exec::{Exec, ExecGrant, ExecPattern};

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
        assert_eq!(
            m.capabilities.get::<Exec>().cloned().unwrap().read_only,
            vec![ExecPattern::Program("uname".into())]
        );
    }

    #[test]
    fn a_command_may_set_its_own_run_defaults() {
        let with = |defaults: &str| {
            GOOD.replace(
                "[[command.arg]]",
                &format!("[command.defaults]\n{defaults}\n[[command.arg]]"),
            )
        };
        let m = Manifest::parse(with("serial = 1\nexec-timeout = \"30m\"").as_bytes()).unwrap();
        let d = &m.commands[0].defaults;
        assert_eq!(d.serial, Some(1));
        assert_eq!(
            d.durations(),
            (Some(std::time::Duration::from_secs(1800)), None)
        );
        assert_eq!(d.as_flags(), vec!["--serial 1", "--exec-timeout 30m"]);
        for (bad, says) in [
            (
                "serial = 0",
                "command `stamp`: defaults.serial must be at least 1",
            ),
            (
                "timeout = \"soon\"",
                "command `stamp`: defaults.timeout: `soon` is not a duration",
            ),
            (
                "exec-timeout = \"0s\"",
                "defaults.exec-timeout must be more than zero",
            ),
            ("retries = 3", "unknown field `retries`"),
        ] {
            let err = Manifest::parse(with(bad).as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // No defaults: nothing is written back into stored records.
        let plain = Manifest::parse(GOOD.as_bytes()).unwrap();
        assert!(!serde_json::to_string(&plain).unwrap().contains("defaults"));
    }

    #[test]
    fn a_path_hole_without_the_paths_to_resolve_in_is_refused() {
        let run = |argv: &str| {
            GOOD.replace(
                "read-only = [\"uname\"]",
                &format!("[[capabilities.exec.run]]\nargv = {argv}"),
            )
        };
        let with_fs =
            |text: String, fs: &str| format!("{text}\n[capabilities.fs]\nreason = \"r\"\n{fs}\n");
        for (argv, fs, says) in [
            (
                r#"["touch", "{path:write}"]"#,
                None,
                Some("which writes no path"),
            ),
            (
                r#"["touch", "{path:write}"]"#,
                Some("read = [\"/etc\"]"),
                Some("which writes no path"),
            ),
            (
                r#"["cat", "{path:read}"]"#,
                None,
                Some("which reads no path"),
            ),
            (
                r#"["btrfs", "quota", "enable", "{mount}"]"#,
                None,
                Some("which reads no path"),
            ),
            (
                r#"["cat", "{path:read}"]"#,
                Some("write = [\"/var/x\"]"),
                None,
            ),
            (
                r#"["touch", "{path:write}"]"#,
                Some("write = [\"/var/x\"]"),
                None,
            ),
        ] {
            let text = match fs {
                Some(fs) => with_fs(run(argv), fs),
                None => run(argv),
            };
            let got = Manifest::parse(text.as_bytes());
            match says {
                Some(says) => {
                    let err = got.unwrap_err().to_string();
                    assert!(
                        err.contains("can never match") && err.contains(says),
                        "{argv}: {err}"
                    );
                }
                None => assert!(got.is_ok(), "{argv}: {:?}", got.err()),
            }
        }
        // A path the operator gives is a path to resolve in.
        let given = with_fs(run(r#"["touch", "{path:write}"]"#), "read = [\"/etc\"]")
            .replace("default = \"hi\"", "path = \"write\"");
        Manifest::parse(given.as_bytes()).unwrap();
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
    fn exec_env_and_users_are_parsed_and_checked() {
        let with = |extra: &str| {
            GOOD.replace(
                "read-only = [\"uname\"]",
                &format!("read-only = [\"uname\"]\n{extra}"),
            )
        };
        let m = Manifest::parse(with("env = [\"PGDATABASE\"]\nusers = [\"postgres\"]").as_bytes())
            .unwrap();
        let exec = m.capabilities.get::<Exec>().cloned().unwrap();
        assert_eq!(
            (exec.env, exec.users),
            (vec!["PGDATABASE".to_string()], vec!["postgres".to_string()])
        );
        let exec = Manifest::parse(GOOD.as_bytes())
            .unwrap()
            .capabilities
            .get::<Exec>()
            .cloned()
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

    /// GOOD with its exec `read-only` line replaced by `exec`.
    fn with_exec(exec: &str) -> String {
        GOOD.replace("read-only = [\"uname\"]", exec)
    }

    fn exec_of(text: &str) -> ExecGrant {
        Manifest::parse(text.as_bytes())
            .unwrap()
            .capabilities
            .get::<Exec>()
            .cloned()
            .unwrap()
    }

    #[test]
    fn exec_entries_are_programs_or_argv_prefixes() {
        let exec = exec_of(&with_exec(
            "programs = [\"touch\", [\"btrfs\", \"qgroup\", \"limit\"]]\n\
             read-only = [[\"btrfs\", \"qgroup\", \"show\"], [\"systemctl\", \"is-active\"], \
             \"uname\", [\"ls\", \"-d x\"]]",
        ));
        let words = |p: &[ExecPattern]| -> Vec<Vec<String>> {
            p.iter().map(|p| p.words().to_vec()).collect()
        };
        assert_eq!(
            words(&exec.programs),
            vec![vec!["touch"], vec!["btrfs", "qgroup", "limit"]]
        );
        assert_eq!(exec.programs[0], ExecPattern::Program("touch".into()));
        assert!(exec.programs[0].is_whole_program() && !exec.programs[1].is_whole_program());
        assert_eq!(exec.read_only[1].program(), "systemctl");
        let shown: Vec<String> = exec.read_only.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            [
                "btrfs qgroup show",
                "systemctl is-active",
                "uname",
                "ls '-d x'"
            ]
        );
        let args = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(exec.read_only[0].matches("btrfs", &args(&["qgroup", "show", "/mnt"])));
        assert!(!exec.read_only[0].matches("btrfs", &args(&["qgroup"])));
        assert!(!exec.read_only[0].matches("/bin/btrfs", &args(&["qgroup", "show"])));
        assert!(exec.read_only[2].matches("uname", &args(&["-a"])));
        // A record written as JSON (the install record) reads back the same.
        let json = serde_json::to_string(&exec).unwrap();
        assert!(
            json.contains(r#""programs":["touch",["btrfs","qgroup","limit"]]"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ExecGrant>(&json).unwrap(), exec);
        // The one-string form of before reads as it always did.
        let old: ExecGrant =
            serde_json::from_str(r#"{"reason":"r","programs":["touch"],"read-only":["uname"]}"#)
                .unwrap();
        assert_eq!(old.read_only, vec![ExecPattern::Program("uname".into())]);
    }

    #[test]
    fn exec_patterns_are_refused_at_install_with_a_reason() {
        for (exec, needle) in [
            (
                "read-only = [[]]",
                "exec pattern `[]` in `read-only` is empty; give a program name, or a list \
                 starting with one",
            ),
            (
                "read-only = [\"\"]",
                "exec program `` must be a bare name or an absolute path, with no whitespace",
            ),
            (
                "programs = [[\"\", \"x\"]]",
                "exec program `` must be a bare name or an absolute path",
            ),
            (
                "read-only = [\"ls -l\"]",
                "exec program `ls -l` must be a bare name or an absolute path, with no whitespace",
            ),
            (
                "read-only = [[\"ls\tx\"]]",
                "exec program `ls\\tx` must be a bare name",
            ),
            (
                "read-only = [\"bin/ls\"]",
                "exec program `bin/ls` must be a bare name or an absolute path",
            ),
            (
                "read-only = [[\"ls\", \"\"]]",
                "exec pattern `ls ''` in `read-only` has an empty argument; every element must \
                 be a non-empty word",
            ),
            (
                "programs = [[\"ls\", \"a\\u0000b\"]]",
                "exec pattern `ls 'a\\x00b'` in `programs` has an argument with a NUL byte",
            ),
            (
                "read-only = [\"ls\", [\"ls\"]]",
                "exec pattern `ls` is listed twice in `read-only`",
            ),
            (
                "read-only = [[\"btrfs\", \"qgroup\", \"show\"], [\"btrfs\", \"qgroup\", \"show\"]]",
                "exec pattern `btrfs qgroup show` is listed twice in `read-only`",
            ),
            (
                "programs = [[\"systemctl\", \"is-active\"]]\nread-only = [[\"systemctl\", \"is-active\"]]",
                "exec pattern `systemctl is-active` is listed both in `programs` and in \
                 `read-only`; list it once (in `read-only` only if it never changes the node)",
            ),
            (
                "read-only = [1]",
                "a program name, or a list of strings: a program and its leading arguments",
            ),
            (
                "read-only = [[\"ls\", 2]]",
                "a program name, or a list of strings: a program and its leading arguments",
            ),
            (
                "read-only = [\"ls\"]\nprefixes = []",
                "unknown field `prefixes`",
            ),
        ] {
            let err = Manifest::parse(with_exec(exec).as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{exec}:\n{err}");
        }
        // Different prefixes of one program, in either list, are fine.
        let exec = exec_of(&with_exec(
            "programs = [\"btrfs\", [\"btrfs\", \"qgroup\"]]\nread-only = [[\"btrfs\", \"qgroup\", \"show\"]]",
        ));
        assert_eq!(exec.programs.len() + exec.read_only.len(), 3);
    }

    #[test]
    fn every_prefix_grant_and_every_open_exact_pattern_is_root() {
        let exec = exec_of(&with_exec(
            "programs = [\"touch\", [\"apt-get\", \"install\"]]\n\
             read-only = [[\"systemctl\", \"is-active\"]]\n\
             [[capabilities.exec.run]]\nargv = [\"uname\", \"-r\"]\nread-only = true\n\
             [[capabilities.exec.run]]\nargv = [\"rsync\", \"{args...}\"]\n\
             [[capabilities.exec.run]]\nargv = [\"sh\", \"-c\", \"{word}\"]",
        ));
        let shown: Vec<String> = exec
            .root_equivalent_grants()
            .into_iter()
            .map(|(shown, _)| shown)
            .collect();
        assert_eq!(
            shown,
            [
                "touch {args...}",
                "apt-get install {args...}",
                "systemctl is-active {args...}",
                "rsync {args...}",
                "sh -c {word}"
            ]
        );
    }

    #[test]
    fn refuses_bad_names() {
        let bad = GOOD.replace("name = \"hello\"", "name = \"Hello World\"");
        let err = Manifest::parse(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("plugin name `Hello World`"), "{err}");
    }
}
