//! The exec grant: `[capabilities.exec]` of a manifest (programs and
//! argv prefixes, mutating or read-only, the roles, environment names and
//! users they may have, and whether nodes may be rebooted), and the checks
//! it passes at install.

use super::pattern::Argv;
use serde::{Deserialize, Serialize};

/// `[capabilities.exec]`: programs a plugin may run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecGrant {
    pub reason: String,
    /// Programs (or argv prefixes) that may change the node.
    #[serde(default)]
    pub programs: Vec<ExecPattern>,
    /// Programs (or argv prefixes) that only read; they also run during
    /// `--dry-run`.
    #[serde(default, rename = "read-only")]
    pub read_only: Vec<ExecPattern>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Environment variables a program may be given beyond the ones every
    /// exec grant allows ([`super::ALWAYS_ALLOWED_ENV`]).
    /// Names that change which code a program loads are refused here.
    #[serde(default)]
    pub env: Vec<String>,
    /// Users a program may run as (through sudo on the node); without a
    /// user a program runs as the node's login user.
    #[serde(default)]
    pub users: Vec<String>,
    /// Whether the plugin may reboot the nodes it reaches (exec.reboot),
    /// and wait for them to come back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reboot: bool,
    /// Exact argv patterns (`[[capabilities.exec.run]]`), each with its
    /// access, its user and its reason. `programs` and `read-only` above
    /// are the older argv prefixes, shown and judged as `PREFIX {args...}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run: Vec<RunEntry>,
}

/// One `[[capabilities.exec.run]]` entry: a command the plugin may run,
/// argument for argument.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunEntry {
    pub argv: Argv,
    /// Runs in `plan` and under `--dry-run` too; refused at install when
    /// the program with those arguments could write ([`super::judge`]).
    #[serde(
        default,
        rename = "read-only",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub read_only: bool,
    /// Who it runs as (through sudo on the node); the login user without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Why the plugin runs it (the grant's `reason` when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One entry of `programs` or `read-only`: a whole program (`"uname"`),
/// or a program with the leading arguments a call must start with
/// (`["btrfs", "qgroup", "show"]`). Untagged, so the manifests written
/// before argv prefixes existed (plain strings) read as they always did,
/// and install records round-trip through JSON the same way.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(
    untagged,
    expecting = "a program name, or a list of strings: a program and its leading arguments"
)]
pub enum ExecPattern {
    /// The whole program, with any arguments.
    Program(String),
    /// The program (first word) called with these leading arguments.
    Prefix(Vec<String>),
}

impl ExecPattern {
    /// The program and the leading arguments, in order.
    pub fn words(&self) -> &[String] {
        match self {
            ExecPattern::Program(p) => std::slice::from_ref(p),
            ExecPattern::Prefix(words) => words,
        }
    }

    /// The program the pattern names (empty only in a pattern refused at
    /// install).
    pub fn program(&self) -> &str {
        self.words().first().map_or("", String::as_str)
    }

    /// Whether the pattern grants the program with any arguments.
    pub fn is_whole_program(&self) -> bool {
        self.words().len() == 1
    }

    /// Whether a call of `program` with `args` starts with this pattern:
    /// the program compared exactly (a path is a different program from a
    /// bare name), then each leading argument compared exactly.
    pub fn matches(&self, program: &str, args: &[String]) -> bool {
        match self.words().split_first() {
            Some((first, leading)) => {
                first == program && args.len() >= leading.len() && args[..leading.len()] == *leading
            }
            None => false,
        }
    }
}

/// Shown as the words a shell would take, quoted where needed, so
/// `["ls", "-d x"]` does not read as `ls -d x`.
impl std::fmt::Display for ExecPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<String> = self
            .words()
            .iter()
            .map(|w| crate::text::shell_quote(w))
            .collect();
        f.write_str(&words.join(" "))
    }
}

impl ExecGrant {
    /// Every pattern with the access it grants, mutating ones first.
    pub fn patterns(&self) -> impl Iterator<Item = (&ExecPattern, bool)> {
        self.programs
            .iter()
            .map(|p| (p, false))
            .chain(self.read_only.iter().map(|p| (p, true)))
    }

    /// Every grant that amounts to root on the node, as it is shown and
    /// why: each argv prefix (it takes any further arguments), and each
    /// exact pattern [`super::judge::root_reason`] names.
    pub fn root_equivalent_grants(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (pattern, _) in self.patterns() {
            out.push((
                format!("{pattern} {{args...}}"),
                "any arguments (an argv prefix: it takes any further arguments)".to_string(),
            ));
        }
        for entry in &self.run {
            if let Some(why) = super::judge::root_reason(&entry.argv) {
                out.push((entry.argv.to_string(), why));
            }
        }
        out
    }

    /// The exact patterns of `[[capabilities.exec.run]]`: read-only ones
    /// that could write, bad users, empty reasons, bad programs, twins.
    fn validate_run(&self) -> Result<(), String> {
        let invalid = |m: String| Err(m);
        for entry in &self.run {
            let shown = crate::text::escape_line(&entry.argv.to_string()).into_owned();
            if entry.read_only
                && let Some(why) = super::judge::read_only_problem(&entry.argv)
            {
                return invalid(format!(
                    "exec run `{shown}` is marked read-only, but {why}; drop `read-only` \
                         (it then never runs under --dry-run) or narrow the pattern"
                ));
            }
            if let Some(user) = &entry.user
                && !is_user_name(user)
            {
                return invalid(format!(
                    "exec run `{shown}`: user `{}` is not a user name",
                    user.escape_default()
                ));
            }
            if entry.reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return invalid(format!(
                    "exec run `{shown}` has an empty `reason`; say why, or leave it out to use \
                     the grant's"
                ));
            }
            let program = entry.argv.program();
            if program.chars().any(char::is_whitespace)
                || (program.contains('/') && !program.starts_with('/'))
            {
                return invalid(format!(
                    "exec run `{shown}`: the program must be a bare name or an absolute path, \
                     with no whitespace"
                ));
            }
            if self
                .run
                .iter()
                .filter(|e| e.argv == entry.argv && e.user == entry.user)
                .count()
                > 1
            {
                return invalid(format!("exec run `{shown}` is listed twice"));
            }
        }
        Ok(())
    }

    /// Programs, argv patterns, environment names and users of an exec
    /// request.
    pub(super) fn validate(&self) -> Result<(), String> {
        let invalid = |m: String| Err(m);
        let mut seen: std::collections::BTreeMap<&[String], &str> = Default::default();
        for (pattern, read_only) in self.patterns() {
            let list = if read_only { "read-only" } else { "programs" };
            let words = pattern.words();
            let Some((program, leading)) = words.split_first() else {
                return invalid(format!(
                    "exec pattern `[]` in `{list}` is empty; give a program name, or a list \
                     starting with one"
                ));
            };
            if program.is_empty()
                || program.contains('\0')
                || program.chars().any(char::is_whitespace)
                || (program.contains('/') && !program.starts_with('/'))
            {
                return invalid(format!(
                    "exec program `{}` must be a bare name or an absolute path, with no \
                     whitespace",
                    program.escape_default()
                ));
            }
            for arg in leading {
                if arg.is_empty() || arg.contains('\0') {
                    let what = if arg.is_empty() {
                        "an empty argument"
                    } else {
                        "an argument with a NUL byte"
                    };
                    return invalid(format!(
                        "exec pattern `{}` in `{list}` has {what}; every element must be a \
                         non-empty word",
                        crate::text::escape_line(&pattern.to_string())
                    ));
                }
            }
            if let Some(first) = seen.insert(words, list) {
                return invalid(if first == list {
                    format!(
                        "exec pattern `{}` is listed twice in `{list}`",
                        crate::text::escape_line(&pattern.to_string())
                    )
                } else {
                    format!(
                        "exec pattern `{}` is listed both in `programs` and in `read-only`; \
                         list it once (in `read-only` only if it never changes the node)",
                        crate::text::escape_line(&pattern.to_string())
                    )
                });
            }
        }
        self.validate_run()?;
        for name in &self.env {
            if !crate::cluster::is_env_name(name) {
                return invalid(format!(
                    "exec env `{}` is not a variable name (letters, digits and `_`, not starting \
                     with a digit)",
                    name.escape_default()
                ));
            }
            if let Some(why) = super::env_never_allowed(name) {
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
