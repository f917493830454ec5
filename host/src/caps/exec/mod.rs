//! `stackhost:host/exec`: run granted programs on nodes.

mod grant;
mod host;
pub mod judge;
pub mod pattern;
mod scope;

pub use grant::{ExecGrant, ExecPattern, RunEntry};
pub use scope::{ALWAYS_ALLOWED_ENV, env_never_allowed, root_equivalent};

use crate::caps::interface::{Granted, Group, Interface, PromptLine, list, on_roles};
use crate::text::escape_line;
use semver::Version;

/// Marker for the `exec` interface.
pub struct Exec;

impl Interface for Exec {
    const NAME: &'static str = "exec";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = true;
}

impl Granted for Exec {
    type Grant = ExecGrant;

    fn reason(g: &ExecGrant) -> &str {
        &g.reason
    }

    fn validate(grant: &ExecGrant) -> Result<(), String> {
        grant.validate()
    }

    fn prompt(e: &ExecGrant) -> Vec<PromptLine> {
        let mut out = Vec::new();
        let group = |read_only| {
            if read_only {
                Group::RunsReadOnly
            } else {
                Group::RunsAndChanges
            }
        };
        for entry in &e.run {
            let mut line = PromptLine::new(group(entry.read_only), entry.argv.to_string())
                .reason(entry.reason.as_deref().unwrap_or(&e.reason))
                .roles(&e.roles);
            line.user = entry.user.clone();
            line.root = judge::root_reason(&entry.argv);
            out.push(line);
        }
        for (pattern, read_only) in e.patterns() {
            let mut line = PromptLine::new(group(read_only), format!("{pattern} {{args...}}"))
                .reason(&e.reason)
                .roles(&e.roles);
            if !e.users.is_empty() {
                line.user = Some(format!("any of {}", e.users.join(", ")));
            }
            line.root =
                Some("any arguments (an argv prefix: it takes any further arguments)".into());
            out.push(line);
        }
        if !e.env.is_empty() {
            out.push(
                PromptLine::new(
                    Group::RunsAndChanges,
                    format!(
                        "programs given the environment variables {}",
                        e.env.join(", ")
                    ),
                )
                .reason(&e.reason),
            );
        }
        if e.reboot {
            out.push(
                PromptLine::new(
                    Group::RunsAndChanges,
                    "reboot nodes and wait for them to come back",
                )
                .reason(&e.reason)
                .roles(&e.roles),
            );
        }
        out
    }

    fn describe(e: &ExecGrant) -> String {
        let users = if e.users.is_empty() {
            String::new()
        } else {
            format!(" as users {}", list(&e.users))
        };
        let env = if e.env.is_empty() {
            String::new()
        } else {
            format!(" with environment {}", list(&e.env))
        };
        let reboot = if e.reboot { ", and reboot nodes" } else { "" };
        format!(
            "exec: run {}{users}{env}{reboot}{} — {}",
            patterns_text(e),
            on_roles(&e.roles),
            escape_line(&e.reason)
        )
    }

    fn root_warnings(e: &ExecGrant) -> Vec<String> {
        e.root_equivalent_grants()
            .into_iter()
            .map(|(shown, why)| {
                format!(
                    "`{}` is equivalent to root on the node: {why}",
                    escape_line(&shown)
                )
            })
            .collect()
    }
}

/// The exec grant's patterns, escaped, comma-separated, each read-only one
/// marked: `touch, btrfs qgroup show (read-only)`.
fn patterns_text(e: &ExecGrant) -> String {
    let exact = e.run.iter().map(|r| {
        let text = escape_line(&r.argv.to_string()).into_owned();
        let user = r
            .user
            .as_ref()
            .map_or(String::new(), |u| format!(" as {}", escape_line(u)));
        let access = if r.read_only { " (read-only)" } else { "" };
        format!("{text}{user}{access}")
    });
    let all: Vec<String> = exact
        .chain(e.patterns().map(|(pattern, read_only)| {
            let text = escape_line(&pattern.to_string()).into_owned();
            if read_only {
                format!("{text} {{args...}} (read-only)")
            } else {
                format!("{text} {{args...}}")
            }
        }))
        .collect();
    if all.is_empty() {
        "nothing".into()
    } else {
        all.join(", ")
    }
}
